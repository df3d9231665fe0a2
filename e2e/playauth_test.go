package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/shared/pubauth"
)

const playSecret = "e2e-play-secret-0123456789"

// TestPlayTokensThroughBinaries: with auth.play_secret on the gateway and the origin, a
// missing, wrong, expired or other-NAME token gets 403 from the gateway (HTTP, RTSP) and
// from the origin directly (HLS, MPEG-TS, embed.html, RTSP), and RTMP plays fail at both;
// a token made by "gateway token" plays through the gateway over HLS (ffprobe follows the
// 302 and the origin's playlists carry the token), RTSP, and the RTMP relay.
func TestPlayTokensThroughBinaries(t *testing.T) {
	t.Parallel()
	mediatest.Tool(t, "ffmpeg")
	mediatest.Tool(t, "ffprobe")
	rs := redistest.Standalone(t)
	secret := "PEERGATE_AUTH_PLAY_SECRET=" + playSecret
	o := startMediaOrigin(t, "play-1", rs.URL(), "", secret)
	gw := startGatewayOn(t, "gw-play", rs.URL(),
		secret,
	)

	pub := mediatest.PublishRTMP(t, "rtmp://"+o.rtmp+"/live/p", mediatest.Source{Size: "320x240"})
	defer pub.Stop()
	var last map[string]string
	if !mediatest.Eventually(30*time.Second, func() bool {
		last, _ = streamOrigins(gw, "live/p")
		return last[o.id] == "running"
	}) {
		t.Fatalf("live/p: gateway lists %v; ffmpeg said: %s", last, pub.Output())
	}

	// The token generator, as an operator runs it.
	cmd := exec.Command(filepath.Join(binDir, "gateway"), "token", "live/p", "-ttl", "1h")
	cmd.Env = []string{secret}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gateway token: %v", err)
	}
	good := strings.TrimSpace(string(out))
	if err := pubauth.CheckToken(playSecret, "live/p", good, "127.0.0.1", time.Now()); err != nil {
		t.Fatalf("gateway token printed %q: %v", good, err)
	}

	future := time.Now().Add(time.Hour).Unix()
	bad := []struct{ desc, query string }{
		{"missing", ""},
		{"wrong", "?token=" + fmt.Sprint(future) + ".AAAAAAAAAAAAAAAAAAAAAA"},
		{"expired", "?" + pubauth.TokenQuery(playSecret, "live/p", time.Now().Add(-time.Minute).Unix(), "")},
		{"other name", "?" + pubauth.TokenQuery(playSecret, "live/q", future, "")},
	}
	c := noRedirects()
	for _, b := range bad {
		for _, path := range []string{"/live/p/index.m3u8", "/live/p/mpegts"} {
			if code, loc, err := probe(context.Background(), c, gw.addr("http"), path+b.query); err != nil || code != 403 || loc != "" {
				t.Errorf("gateway %s %s: %d %q %v, want 403", b.desc, path, code, loc, err)
			}
		}
		for _, path := range []string{"/live/p/index.m3u8", "/live/p/mpegts", "/live/p/embed.html"} {
			if code, _, err := probe(context.Background(), c, o.http, path+b.query); err != nil || code != 403 {
				t.Errorf("origin %s %s: %d %v, want 403", b.desc, path, code, err)
			}
		}
		if code, _, err := rtspDescribe(gw.addr("rtsp"), "/live/p"+b.query); err != nil || code != 403 {
			t.Errorf("gateway RTSP %s: %d %v, want 403", b.desc, code, err)
		}
		if code, _, err := rtspDescribe(o.rtsp, "/live/p"+b.query); err != nil || code != 403 {
			t.Errorf("origin RTSP %s: %d %v, want 403", b.desc, code, err)
		}
	}
	for _, u := range []string{"rtmp://" + gw.addr("rtmp") + "/live/p" + bad[2].query, "rtmp://" + o.rtmp + "/live/p"} {
		if _, err := mediatest.ProbeStream(context.Background(), u, mediatest.ReadOptions{Frames: 5, Timeout: 30 * time.Second}); err == nil {
			t.Errorf("RTMP %s played without a valid token", u)
		}
	}

	code, loc, err := probe(context.Background(), c, gw.addr("http"), "/live/p/index.m3u8?"+good)
	if want := o.publicHTTP + "/live/p/index.m3u8?" + good; err != nil || code != 302 || loc != want {
		t.Fatalf("gateway with the token: %d %q %v, want 302 to %s", code, loc, err, want)
	}
	for _, r := range []struct {
		url  string
		opts mediatest.ReadOptions
	}{
		{"http://" + gw.addr("http") + "/live/p/index.m3u8?" + good, mediatest.ReadOptions{}},
		{"rtsp://" + gw.addr("rtsp") + "/live/p?" + good, mediatest.ReadOptions{RTSPTransport: "tcp"}},
		{"rtmp://" + gw.addr("rtmp") + "/live/p?" + good, mediatest.ReadOptions{}},
	} {
		r.opts.Frames, r.opts.Timeout = 25, 60*time.Second
		p, err := mediatest.ProbeStream(context.Background(), r.url, r.opts)
		if err != nil || p.Width != 320 || p.Height != 240 {
			t.Errorf("%s: %+v %v", r.url, p, err)
		}
	}
}

// TestPublishHookThroughBinaries: with auth.http_url on the gateway and the origin, the hook
// (a real HTTP server here) decides publishes at the gateway's RTMP and RTSP relays and at
// the origin's doors: a denied NAME is refused, an allowed NAME goes live, and the hook
// heard the protocol of each door.
func TestPublishHookThroughBinaries(t *testing.T) {
	t.Parallel()
	mediatest.Tool(t, "ffmpeg")
	var mu sync.Mutex
	var heard []pubauth.HookRequest
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req pubauth.HookRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		heard = append(heard, req)
		mu.Unlock()
		if strings.HasPrefix(req.Name, "live/ok") && req.Query == "user=alice" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	defer hook.Close()
	rs := redistest.Standalone(t)
	h := "PEERGATE_AUTH_HTTP_URL=" + hook.URL
	o := startMediaOrigin(t, "hook-1", rs.URL(), "", h)
	gw := startGatewayOn(t, "gw-hook", rs.URL(),
		h,
	)

	for _, c := range []struct{ desc, url, transport string }{
		{"gateway rtmp", "rtmp://" + gw.addr("rtmp") + "/live/no1?user=alice", ""},
		{"gateway rtsp", "rtsp://" + gw.addr("rtsp") + "/live/no2?user=alice", "tcp"},
		{"origin rtmp", "rtmp://" + o.rtmp + "/live/ok3?user=mallory", ""},
	} {
		var p *mediatest.Proc
		if c.transport == "" {
			p = mediatest.PublishRTMP(t, c.url, mediatest.Source{Size: "320x240"})
		} else {
			p = mediatest.PublishRTSP(t, c.url, c.transport, mediatest.Source{Size: "320x240"})
		}
		err, done := p.Wait(30 * time.Second)
		if !done {
			p.Stop()
			t.Errorf("%s: ffmpeg still publishing after 30s", c.desc)
		} else if err == nil {
			t.Errorf("%s: ffmpeg exited cleanly, want a refusal: %s", c.desc, p.Output())
		}
	}
	for i, c := range []struct{ proto, url string }{
		{"rtmp", "rtmp://" + gw.addr("rtmp") + "/live/ok1?user=alice"},
		{"rtsp", "rtsp://" + gw.addr("rtsp") + "/live/ok2?user=alice"},
	} {
		name := fmt.Sprintf("live/ok%d", i+1)
		var p *mediatest.Proc
		if c.proto == "rtmp" {
			p = mediatest.PublishRTMP(t, c.url, mediatest.Source{Size: "320x240"})
		} else {
			p = mediatest.PublishRTSP(t, c.url, "tcp", mediatest.Source{Size: "320x240"})
		}
		var last map[string]string
		if !mediatest.Eventually(30*time.Second, func() bool {
			last, _ = streamOrigins(gw, name)
			return last[o.id] == "running"
		}) {
			t.Errorf("%s allowed by the hook: gateway lists %v; ffmpeg said: %s", name, last, p.Output())
		}
		p.Stop()
	}
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]bool{}
	for _, r := range heard {
		if r.Action != "publish" || r.Client == "" {
			t.Errorf("hook heard %+v", r)
		}
		seen[r.Protocol+" "+r.Name] = true
	}
	// The relays ask at the gateway (and the origin asks again for a relayed session).
	for _, want := range []string{"rtmp live/no1", "rtsp live/no2", "rtmp live/ok3", "rtmp live/ok1", "rtsp live/ok2"} {
		if !seen[want] {
			t.Errorf("hook never heard %q: %v", want, seen)
		}
	}
}
