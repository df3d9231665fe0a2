package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/redistest"
)

// TestComposeTopologyFromBinaries runs docker-compose.yml's peergate services as processes: the
// config files compose mounts, the environment compose sets, with only hosts and ports rewritten
// to free 127.0.0.1 ports (and the image's demo clip path to the repository's). It then plays
// HLS, HTTP MPEG-TS, RTSP and RTMP (relayed) through both gateways with ffprobe, the on-demand `relay/demo`
// (origin2 pulling origin1 over RTSP) through the first, and runs every service's compose
// health check command against it.
func TestComposeTopologyFromBinaries(t *testing.T) {
	t.Parallel()
	mediatest.Tool(t, "ffprobe")
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(b, &cf); err != nil {
		t.Fatal(err)
	}
	rs := redistest.Standalone(t)
	demo, err := filepath.Abs(mediatest.Demo(t))
	if err != nil {
		t.Fatal(err)
	}

	type service struct {
		name, bin, config string
		env               []string
		p                 *proc
		listen            map[string]string // protocol -> 127.0.0.1:port
	}
	// Origins first (sorted), so origin2's pull source can name origin1's rewritten address.
	var names []string
	for n, s := range cf.Services {
		if binaryOf(s.Image) != "" && len(s.Profiles) == 0 {
			names = append(names, n)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		ba, bb := binaryOf(cf.Services[a].Image), binaryOf(cf.Services[b].Image)
		if ba != bb {
			return strings.Compare(bb, ba) // origin before gateway
		}
		return strings.Compare(a, b)
	})
	services := map[string]*service{}
	var gateways []*service
	for _, n := range names {
		cs := cf.Services[n]
		s := &service{name: n, bin: binaryOf(cs.Image), listen: map[string]string{}}
		text, err := os.ReadFile(hostPath(t, n, cs.Volumes, cs.Command[1]))
		if err != nil {
			t.Fatal(err)
		}
		rewritten := strings.ReplaceAll(string(text), "/usr/share/peergate/demo.ts", demo)
		for other, o := range services {
			// A pull source naming another service's RTSP port: that service's rewritten address.
			rewritten = strings.ReplaceAll(rewritten, "rtsp://"+other+":"+cfgPort(t, cf, other, "rtsp"), "rtsp://"+o.listen["rtsp"])
		}
		s.config = writeFile(t, n+".yaml", rewritten)
		for k, v := range cs.Environment {
			s.env = append(s.env, k+"="+interpolate(v))
		}
		s.env = append(s.env, "PEERGATE_REDIS_URL="+rs.URL(), "PEERGATE_LISTEN_ADMIN=127.0.0.1:0")
		if s.bin == "origin" {
			for _, l := range []string{"http", "rtsp", "rtmp"} {
				s.listen[l] = freeAddr(t)
				s.env = append(s.env, "PEERGATE_LISTEN_"+strings.ToUpper(l)+"="+s.listen[l],
					"PEERGATE_PUBLIC_"+strings.ToUpper(l)+"="+l+"://"+s.listen[l])
			}
			// The private host (the compose service name) is a host to rewrite like the others.
			s.env = append(s.env, "PEERGATE_PRIVATE=127.0.0.1")
			s.p = start(t, "origin", n, s.config, s.env, "http", "rtsp", "rtmp", "admin")
		} else {
			s.env = append(s.env, "PEERGATE_LISTEN_HTTP=127.0.0.1:0", "PEERGATE_LISTEN_RTSP=127.0.0.1:0", "PEERGATE_LISTEN_RTMP=127.0.0.1:0")
			s.p = start(t, "gateway", n, s.config, s.env, "http", "rtsp", "rtmp", "admin")
			waitReady(t, s.p)
			gateways = append(gateways, s)
		}
		services[n] = s
	}
	if len(gateways) < 2 || len(services)-len(gateways) < 2 {
		t.Fatalf("compose runs %d gateways and %d origins, want 2 and 2", len(gateways), len(services)-len(gateways))
	}

	// Every stream the origins carry listed by the gateways before anyone plays.
	for _, s := range services {
		if s.bin != "origin" {
			continue
		}
		for stream, src := range loadConfig(t, "origin", s.config, s.env).streams {
			var last map[string]string
			if !mediatest.Eventually(20*time.Second, func() bool {
				last, _ = streamOrigins(gateways[len(gateways)-1].p, stream)
				return last[s.name] != ""
			}) {
				t.Fatalf("%s (from %s on %s) not listed by the gateway: %v", stream, src, s.name, last)
			}
		}
	}

	// The compose health checks, as Docker runs them (config file and environment of the service).
	for _, s := range services {
		cmd := exec.Command(filepath.Join(binDir, s.bin), "healthcheck", "-config", s.config)
		cmd.Env = append(s.env[:len(s.env):len(s.env)], "PEERGATE_LISTEN_ADMIN="+s.p.addr("admin"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s healthcheck: %v: %s", s.name, err, out)
		}
	}

	type play struct{ url, transport string }
	var plays []play
	for _, g := range gateways {
		plays = append(plays,
			play{"http://" + g.p.addr("http") + "/demo/index.m3u8", ""},
			play{"http://" + g.p.addr("http") + "/live/demo2/mpegts", ""},
			play{"rtsp://" + g.p.addr("rtsp") + "/demo", "tcp"},
			play{"rtmp://" + g.p.addr("rtmp") + "/static/demo", ""},
			play{"rtmp://" + g.p.addr("rtmp") + "/live/demo2", ""},
		)
	}
	plays = append(plays, play{"http://" + gateways[0].p.addr("http") + "/relay/demo/mpegts", ""})
	for _, pl := range plays {
		if strings.HasPrefix(pl.url, "http") {
			path := pl.url[strings.Index(pl.url[7:], "/")+7:]
			host := strings.TrimPrefix(pl.url[:len(pl.url)-len(path)], "http://")
			code, loc, err := probe(context.Background(), noRedirects(), host, path)
			if err != nil || code != http.StatusFound {
				t.Errorf("%s: %d %q %v, want a 302", pl.url, code, loc, err)
				continue
			}
		}
		p, err := mediatest.ProbeStream(context.Background(), pl.url, mediatest.ReadOptions{RTSPTransport: pl.transport, Frames: 25, Timeout: 30 * time.Second})
		if err != nil {
			t.Errorf("%s: %v", pl.url, err)
			continue
		}
		if p.VideoCodec != "h264" || p.Width != 640 || p.Height != 360 || p.Frames < 25 {
			t.Errorf("%s: decoded %s %dx%d, %d frames; want h264 640x360, >= 25 frames (%s)", pl.url, p.VideoCodec, p.Width, p.Height, p.Frames, p.Log)
			continue
		}
		t.Logf("%s: %d frames h264 640x360", pl.url, p.Frames)
	}
}

// cfgPort is the port service listens on for protocol in the config file compose mounts.
func cfgPort(t *testing.T, cf composeFile, service, protocol string) string {
	t.Helper()
	cs := cf.Services[service]
	l := loadConfig(t, binaryOf(cs.Image), hostPath(t, service, cs.Volumes, cs.Command[1]), nil)
	addr := l.listen[protocol]
	return addr[strings.LastIndex(addr, ":")+1:]
}
