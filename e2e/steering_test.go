package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/browsertest"
	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/redistest"
)

// steerSegment is the HLS segment duration of the steering test's origins (and the
// publisher's key frame interval): the longest stall the test allows.
const steerSegment = 2 * time.Second

// steerPage plays the gateway's HLS entry with hls.js and records, for the test to read:
// currentTime samples, every fragment loaded, steering answers, level switches and errors.
const steerPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>steering</title></head>
<body><video id="v" muted autoplay playsinline width="640" height="360"></video>
<script src="/hls.min.js"></script>
<script>
window.rec = {samples: [], frags: [], levels: [], logs: [], pathways: [], steering: [], switches: [], errors: []};
const v = document.getElementById('v');
const keep = (lvl) => (...args) => { if (rec.logs.length < 3000) rec.logs.push({t: performance.now(), m: lvl + ' ' + args.map(String).join(' ').slice(0, 300)}); };
const hls = new Hls({debug: %t ? {log: keep('log'), debug: keep('debug'), info: keep('info'), warn: keep('warn'), error: keep('error')} : false});
window.hls = hls;
hls.on(Hls.Events.FRAG_LOADED, (e, d) => rec.frags.push({t: performance.now(), url: d.frag.url, sn: d.frag.sn, start: d.frag.start, pdt: d.frag.programDateTime || 0}));
hls.on(Hls.Events.LEVEL_LOADED, (e, d) => rec.levels.push({t: performance.now(), url: d.details.url, startSN: d.details.startSN, endSN: d.details.endSN,
  start: d.details.fragments.length ? d.details.fragments[0].start : -1, pdt: d.details.fragments.length ? d.details.fragments[0].programDateTime || 0 : 0}));
hls.on(Hls.Events.STEERING_MANIFEST_LOADED, (e, d) => rec.steering.push({t: performance.now(), priority: d.steeringManifest['PATHWAY-PRIORITY'] || [], clones: (d.steeringManifest['PATHWAY-CLONES'] || []).map(c => c.ID)}));
hls.on(Hls.Events.LEVEL_SWITCHED, (e, d) => { const l = hls.levels[d.level]; rec.switches.push({t: performance.now(), pathway: l ? (l.pathwayId || '') : '', url: l ? l.url[0] || l.uri || '' : ''}); });
hls.on(Hls.Events.MANIFEST_PARSED, () => rec.pathways.push({t: performance.now(), pathway: hls.levels[0] ? hls.levels[0].pathwayId : ''}));
hls.on(Hls.Events.LEVELS_UPDATED, () => rec.pathways.push({t: performance.now(), pathway: hls.levels[0] ? hls.levels[0].pathwayId : ''}));
hls.on(Hls.Events.ERROR, (e, d) => rec.errors.push({t: performance.now(), details: String(d.details), fatal: !!d.fatal}));
hls.loadSource(%q);
hls.attachMedia(v);
v.play().catch(() => {});
setInterval(() => rec.samples.push({t: performance.now(), ct: v.currentTime, rs: v.readyState}), 250);
</script></body></html>`

type steerSample struct {
	T  float64 `json:"t"`
	CT float64 `json:"ct"`
	RS int     `json:"rs"`
}

type steerFrag struct {
	T     float64 `json:"t"`
	URL   string  `json:"url"`
	SN    int     `json:"sn"`
	Start float64 `json:"start"` // position on hls.js's timeline
	PDT   float64 `json:"pdt"`   // PROGRAM-DATE-TIME, ms
}

type steerRec struct {
	Samples []steerSample `json:"samples"`
	Frags   []steerFrag   `json:"frags"`
	Logs    []struct {
		T float64 `json:"t"`
		M string  `json:"m"`
	} `json:"logs"`
	Levels []struct {
		T       float64 `json:"t"`
		URL     string  `json:"url"`
		StartSN int     `json:"startSN"`
		EndSN   int     `json:"endSN"`
		Start   float64 `json:"start"`
		PDT     float64 `json:"pdt"`
	} `json:"levels"`
	Steering []struct {
		T        float64  `json:"t"`
		Priority []string `json:"priority"`
		Clones   []string `json:"clones"`
	} `json:"steering"`
	Pathways []struct {
		T       float64 `json:"t"`
		Pathway string  `json:"pathway"`
	} `json:"pathways"`
	Switches []struct {
		T       float64 `json:"t"`
		Pathway string  `json:"pathway"`
	} `json:"switches"`
	Errors []struct {
		T       float64 `json:"t"`
		Details string  `json:"details"`
		Fatal   bool    `json:"fatal"`
	} `json:"errors"`
}

func hostOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Host
}

// hlsViewer is ffmpeg reading an HLS URL (decoding the first video stream), with the URLs it
// opened and its decoded frame count as they come.
type hlsViewer struct {
	mu     sync.Mutex
	frames int
	opened []string
	done   chan struct{}
}

var openingRe = regexp.MustCompile(`Opening '([^']+)' for reading`)

func startHLSViewer(t *testing.T, u string) *hlsViewer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "info", "-user_agent", "steer-ffmpeg",
		"-i", u, "-map", "0:v:0", "-f", "null", "-progress", "pipe:1", "-")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	v := &hlsViewer{done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "frame="); ok {
				if f, err := strconv.Atoi(strings.TrimSpace(n)); err == nil {
					v.mu.Lock()
					v.frames = f
					v.mu.Unlock()
				}
			}
		}
	})
	wg.Go(func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if m := openingRe.FindStringSubmatch(sc.Text()); m != nil {
				v.mu.Lock()
				v.opened = append(v.opened, m[1])
				v.mu.Unlock()
			}
		}
	})
	go func() { wg.Wait(); _ = cmd.Wait(); close(v.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-v.done:
		case <-time.After(10 * time.Second):
		}
	})
	return v
}

func (v *hlsViewer) state() (int, []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.frames, append([]string(nil), v.opened...)
}

// TestSteeringHLSJSDrain (issue 9, HLS content steering): the gateway runs with http.steering
// on; live/steer is published with ffmpeg on origin A and relayed by origin B (cluster
// pull-through, started by a reader of B), so the gateway's multivariant playlist lists two
// pathways, A first. hls.js in headless Chromium plays the gateway's index.m3u8; mid-playback
// A is drained (SIGTERM, a drain_timeout long enough to keep serving). The steering answer
// puts B first at once; hls.js loads its fragments from B from then on, and the video's
// currentTime advances throughout with no stall longer than one segment (2 s). An ffmpeg
// HLS viewer of the same multivariant playlist (no steering support) plays the first
// pathway, A, and keeps decoding across the drain.
func TestSteeringHLSJSDrain(t *testing.T) {
	t.Parallel()
	mediatest.Tool(t, "ffmpeg")
	rs := redistest.Standalone(t)
	seg := "PEERGATE_HLS_SEGMENT_DURATION=" + steerSegment.String()
	a := startMediaOrigin(t, "steer-a", rs.URL(), "", seg, "PEERGATE_DRAIN_TIMEOUT=300s")
	b := startMediaOrigin(t, "steer-b", rs.URL(), "", seg, "PEERGATE_ONDEMAND_IDLE_TIMEOUT=120s")
	gw := startGatewayOn(t, "gw", rs.URL(), "PEERGATE_HTTP_STEERING=true", "PEERGATE_HTTP_STEERING_TTL=1s",
		"PEERGATE_REGISTRY_ANTI_ENTROPY=5s")

	const name = "live/steer"
	mediatest.PublishRTMP(t, "rtmp://"+a.rtmp+"/"+name, mediatest.Source{GOP: int(steerSegment.Seconds()) * 25})
	mediatest.EventuallyT(t, 30*time.Second, func() bool {
		m, _ := streamOrigins(gw, name)
		return m["steer-a"] == "running"
	}, "%s never ran on steer-a", name)

	// The layout the gateway assumes: the origin's HLS entry lists main_stream.m3u8.
	res, err := http.Get(a.publicHTTP + "/" + name + "/index.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "\nmain_stream.m3u8") {
		t.Fatalf("origin index.m3u8 does not list main_stream.m3u8:\n%s", body)
	}

	// A reader of B makes B relay live/steer from A, for the whole test.
	keepB := mediatest.Start(t, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp",
		"-i", "rtsp://"+b.rtsp+"/"+name, "-map", "0:v:0", "-c", "copy", "-f", "null", "-")
	defer keepB.Stop()
	mediatest.EventuallyT(t, 30*time.Second, func() bool {
		r, _ := relaysOf(gw, name)
		return r["steer-b"]
	}, "steer-b never listed as a relay of %s", name)

	// The multivariant playlist: two pathways, A first.
	entry := "http://" + gw.addr("http") + "/" + name + "/index.m3u8"
	res, err = http.Get(entry)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	mv := string(body)
	ia, ib := strings.Index(mv, "http://"+a.http+"/"+name+"/main_stream.m3u8"), strings.Index(mv, "http://"+b.http+"/"+name+"/main_stream.m3u8")
	if res.StatusCode != 200 || !strings.Contains(mv, `#EXT-X-CONTENT-STEERING:SERVER-URI="/_peergate/steering?stream=live%2Fsteer",PATHWAY-ID="steer-a"`) ||
		ia < 0 || ib < 0 || ia > ib {
		t.Fatalf("multivariant playlist (%d), want steer-a then steer-b:\n%s", res.StatusCode, mv)
	}
	t.Logf("multivariant playlist:\n%s", mv)

	// ffmpeg (no steering) reads the same playlist.
	ff := startHLSViewer(t, entry)

	// hls.js plays from A; A drains; the player must move to B without a stall.
	var framesBefore int
	steerAcrossDrain(t, gw, entry,
		steerCopy{id: "steer-a", host: a.http, p: a.p}, steerCopy{id: "steer-b", host: b.http},
		func() {
			framesBefore, _ = ff.state()
			// What each copy serves at the drain: media sequence, PROGRAM-DATE-TIME and the
			// first PTS of its newest segment (the report of a stall needs them).
			for _, o := range []*mediaOrigin{a, b} {
				logCopy(t, o.id, o.publicHTTP+"/"+name)
			}
		})
	framesAfter, opened := ff.state()

	// ffmpeg kept decoding across the drain, from the first pathway: its media playlist and
	// segments came from A (it may have probed B's playlist at the start).
	if framesAfter <= framesBefore+25 {
		t.Errorf("ffmpeg decoded %d frames before the drain and %d after it: not playing", framesBefore, framesAfter)
	}
	// ffmpeg's HLS demuxer probes every variant when it opens the playlist (a segment or
	// two of each), then reads only the one it plays: after the probe, every segment it
	// opens must come from A.
	var fromA, fromB, aAfterLastB int
	for _, u := range opened {
		if !strings.Contains(u, ".ts") {
			continue
		}
		switch hostOf(u) {
		case a.http:
			fromA++
			aAfterLastB++
		case b.http:
			fromB++
			aAfterLastB = 0
		}
	}
	t.Logf("ffmpeg: %d frames, segments from steer-a %d, from steer-b %d (the last %d all from steer-a)", framesAfter, fromA, fromB, aAfterLastB)
	if fromA < 5 || fromB > 2 || aAfterLastB < fromA-2 {
		t.Errorf("ffmpeg read %d segments from steer-a and %d from steer-b, want the first pathway (steer-a): %q", fromA, fromB, opened)
	}
}

// steerCopy is one pathway of a steering test: its origin id, the host its playlist URIs
// name, and its process (to drain it).
type steerCopy struct {
	id, host string
	p        *proc
}

// logCopy logs what a copy serves for NAME now (base is its public URL + "/" + NAME): the
// media playlist, and the first PTS of its newest segment.
func logCopy(t *testing.T, id, base string) {
	pl := fetchText(base + "/main_stream.m3u8")
	last := ""
	for l := range strings.Lines(pl) {
		if l = strings.TrimSpace(l); strings.HasSuffix(l, ".ts") {
			last = l
		}
	}
	pts := "?"
	if last != "" {
		out, _ := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=start_time", "-of", "csv=p=0", base+"/"+last).Output()
		pts = strings.TrimSpace(string(out))
	}
	t.Logf("%s at the drain: newest segment %s starts at PTS %s s; playlist:\n%s", id, last, pts, pl)
}

// steerAcrossDrain plays the gateway's HLS entry with hls.js in headless Chromium (the page
// and hls.js served by the test, another origin than the gateway's) until it plays from
// from.host, calls atDrain, drains from (SIGTERM: its long drain_timeout keeps it serving),
// and checks that the steering answers put to.id first, that hls.js moves its pathway and
// fragment requests to to.host, and that currentTime advanced throughout: between any two
// samples more than a segment apart (steerSegment), from steady play to the end.
func steerAcrossDrain(t *testing.T, gw *proc, entry string, from, to steerCopy, atDrain func()) {
	t.Helper()
	// The page, from the test's own server (another origin than the gateway's).
	hlsJS, err := os.ReadFile("../origin/httpsrv/assets/hls.min.js")
	if err != nil {
		t.Fatal(err)
	}
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hls.min.js":
			w.Header().Set("Content-Type", "text/javascript")
			_, _ = w.Write(hlsJS)
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, steerPage, os.Getenv("STEER_DEBUG") != "", entry)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(page.Close)

	c := browsertest.Start(t)
	tab := c.Open(page.URL + "/")
	read := func() steerRec {
		var r steerRec
		c.Eval(tab, "window.rec", &r)
		return r
	}
	now := func() float64 {
		var f float64
		c.Eval(tab, "performance.now()", &f)
		return f
	}

	// Playing from A: media time past a few seconds, fragments from A's host.
	mediatest.EventuallyT(t, 60*time.Second, func() bool {
		r := read()
		if len(r.Samples) == 0 || r.Samples[len(r.Samples)-1].CT < 6 {
			return false
		}
		for _, f := range r.Frags {
			if hostOf(f.URL) == from.host {
				return true
			}
		}
		return false
	}, "hls.js never played from %s: %+v", from.id, read())

	atDrain()
	drainedAt := now()
	from.p.signal(syscall.SIGTERM)
	mediatest.EventuallyT(t, 30*time.Second, func() bool {
		// Draining, or gone already when nobody watched it directly (its drain has nothing to wait for).
		st := originState(gw, from.id)
		return st == "draining" || st == ""
	}, "the gateway never saw %s draining or gone", from.id)

	// Fragments move to the other copy; then play on for a while.
	var movedAt float64
	mediatest.EventuallyT(t, 60*time.Second, func() bool {
		for _, f := range read().Frags {
			if f.T > drainedAt && hostOf(f.URL) == to.host {
				movedAt = f.T
				return true
			}
		}
		return false
	}, "hls.js never loaded a fragment from %s after the drain: %+v", to.id, read())
	time.Sleep(5 * steerSegment)
	r := read()

	t.Logf("drain of %s at %.1f s, first fragment from %s %.1f s later; %d samples, %d fragments, steering answers %d, switches %+v, errors %+v",
		from.id, drainedAt/1000, to.id, (movedAt-drainedAt)/1000, len(r.Samples), len(r.Frags), len(r.Steering), r.Switches, r.Errors)
	for _, f := range r.Frags {
		t.Logf("frag loaded %8.1f ms from the drain: sn %d, timeline start %.2f s, PDT %s, %s", f.T-drainedAt, f.SN, f.Start,
			time.UnixMilli(int64(f.PDT)).UTC().Format("15:04:05.000"), f.URL)
	}
	if os.Getenv("STEER_DEBUG") != "" {
		for _, l := range r.Logs {
			if l.T > drainedAt-1000 && l.T < drainedAt+25000 {
				t.Logf("hls.js %8.1f ms: %s", l.T-drainedAt, l.M)
			}
		}
	}
	for _, l := range r.Levels {
		t.Logf("playlist loaded %8.1f ms from the drain: sn %d..%d, first fragment at %.2f s, PDT %s, %s", l.T-drainedAt, l.StartSN, l.EndSN, l.Start,
			time.UnixMilli(int64(l.PDT)).UTC().Format("15:04:05.000"), l.URL)
	}
	for i := 0; i < len(r.Samples); i += 4 {
		sm := r.Samples[i]
		t.Logf("sample %8.1f ms from the drain: currentTime %.2f, readyState %d", sm.T-drainedAt, sm.CT, sm.RS)
	}

	// After the move every fragment comes from the other copy.
	for _, f := range r.Frags {
		if f.T > movedAt && hostOf(f.URL) != to.host {
			t.Errorf("fragment %s loaded %.1f s after the move to %s", f.URL, (f.T-movedAt)/1000, to.id)
		}
	}
	// The player's pathway: from.id at the start, to.id after the drain.
	t.Logf("pathways: %+v", r.Pathways)
	if len(r.Pathways) == 0 || r.Pathways[0].Pathway != from.id || r.Pathways[len(r.Pathways)-1].Pathway != to.id {
		t.Errorf("hls.js pathways %+v, want %s then %s", r.Pathways, from.id, to.id)
	}
	// The steering answers put the other copy first after the drain.
	sawTo := false
	for _, s := range r.Steering {
		if s.T > drainedAt && len(s.Priority) > 0 && s.Priority[0] == to.id {
			sawTo = true
		}
	}
	if !sawTo {
		t.Errorf("no steering answer after the drain put %s first: %+v", to.id, r.Steering)
	}
	for _, e := range r.Errors {
		if e.Fatal {
			t.Errorf("hls.js fatal error %s at %.1f s", e.Details, (e.T-drainedAt)/1000)
		}
	}

	// Playback never stalls longer than one segment, from steady play to the end: between any
	// two samples more than a segment apart, currentTime advanced.
	start := 0
	for start < len(r.Samples) && r.Samples[start].CT < 1 {
		start++
	}
	ss := r.Samples[start:]
	if len(ss) < 20 || ss[len(ss)-1].T < movedAt+3*float64(steerSegment.Milliseconds()) {
		t.Fatalf("too few samples after the move: %d", len(ss))
	}
	longest, at := 0.0, 0.0
	for i, j := 0, 0; i < len(ss); i++ {
		for j < len(ss) && ss[j].CT <= ss[i].CT {
			j++
		}
		// ss[i..j-1] did not advance past ss[i].
		if d := ss[j-1].T - ss[i].T; d > longest {
			longest, at = d, ss[i].T
		}
	}
	t.Logf("longest span without currentTime advancing: %.2f s at %.1f s from the drain; media time %.1f -> %.1f s over %.1f s",
		longest/1000, (at-drainedAt)/1000, ss[0].CT, ss[len(ss)-1].CT, (ss[len(ss)-1].T-ss[0].T)/1000)
	if longest > float64(steerSegment.Milliseconds()) {
		t.Errorf("playback stalled for %.2f s (more than a segment, %v) at %.1f s from the drain", longest/1000, steerSegment, (at-drainedAt)/1000)
	}

}

// originState is an origin's state as the gateway's admin API shows it.
func originState(gw *proc, id string) string {
	res, err := http.Get("http://" + gw.addr("admin") + "/api/v1/origins")
	if err != nil {
		return ""
	}
	defer res.Body.Close()
	var body struct {
		Origins []struct {
			Origin struct {
				ID    string `json:"id"`
				State string `json:"state"`
			} `json:"origin"`
		} `json:"origins"`
	}
	if json.NewDecoder(res.Body).Decode(&body) != nil {
		return ""
	}
	for _, o := range body.Origins {
		if o.Origin.ID == id {
			return o.Origin.State
		}
	}
	return ""
}

func fetchText(u string) string {
	res, err := http.Get(u)
	if err != nil {
		return err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	return string(b)
}

// TestSteeringHLSJSDrainAlignedCopies is the control of TestSteeringHLSJSDrain, and the test
// of PATHWAY-CLONES: the second copy is perfectly interchangeable with the first (origin B's
// public HTTP URL is a reverse proxy to origin A: the same playlists and segments, under
// another host and pathway), and it appears only after the player loaded the multivariant
// playlist, which lists A alone. hls.js plays from A through the steering gateway; B
// announces live/steer; the steering answers offer B as a clone of A; A is drained
// mid-playback; the player moves its pathway and its fragment requests to B's host, with no
// stall longer than a segment. It separates what the gateway's steering does from how alike
// the copies are.
func TestSteeringHLSJSDrainAlignedCopies(t *testing.T) {
	t.Parallel()
	mediatest.Tool(t, "ffmpeg")
	rs := redistest.Standalone(t)
	seg := "PEERGATE_HLS_SEGMENT_DURATION=" + steerSegment.String()
	const token = "steering-admin-token-0123"
	a := startMediaOrigin(t, "steer-a", rs.URL(), "", seg, "PEERGATE_DRAIN_TIMEOUT=300s")
	target, _ := url.Parse(a.publicHTTP)
	proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
	t.Cleanup(proxy.Close)
	b := startMediaOrigin(t, "steer-b", rs.URL(), "", seg, "PEERGATE_DRAIN_TIMEOUT=300s",
		"PEERGATE_PUBLIC_HTTP="+proxy.URL, "PEERGATE_ADMIN_TOKEN="+token)
	gw := startGatewayOn(t, "gw", rs.URL(), "PEERGATE_HTTP_STEERING=true", "PEERGATE_HTTP_STEERING_TTL=1s",
		"PEERGATE_REGISTRY_ANTI_ENTROPY=5s")

	const name = "live/steer"
	mediatest.PublishRTMP(t, "rtmp://"+a.rtmp+"/"+name, mediatest.Source{GOP: int(steerSegment.Seconds()) * 25})
	mediatest.EventuallyT(t, 30*time.Second, func() bool {
		m, _ := streamOrigins(gw, name)
		return m["steer-a"] == "running"
	}, "%s never ran on steer-a", name)
	entry := "http://" + gw.addr("http") + "/" + name + "/index.m3u8"
	if mv := fetchText(entry); strings.Contains(mv, "steer-b") || !strings.Contains(mv, `PATHWAY-ID="steer-a"`) {
		t.Fatalf("multivariant playlist before steer-b carries the stream:\n%s", mv)
	}

	proxyHost := hostOf(proxy.URL)
	steerAcrossDrain(t, gw, entry, steerCopy{id: "steer-a", host: a.http, p: a.p}, steerCopy{id: "steer-b", host: proxyHost},
		func() {
			// B announces the name (the admin API) after the player loaded the playlist.
			req, _ := http.NewRequest(http.MethodPut, "http://"+b.p.addr("admin")+"/api/v1/streams/"+name, strings.NewReader(`{"state":"running"}`))
			req.Header.Set("Authorization", "Bearer "+token)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode/100 != 2 {
				t.Fatalf("announcing %s on steer-b: %d", name, res.StatusCode)
			}
			mediatest.EventuallyT(t, 30*time.Second, func() bool {
				m, _ := streamOrigins(gw, name)
				return m["steer-b"] == "running"
			}, "%s never listed on steer-b", name)
			// Two steering TTLs: the player has had an answer offering the clone.
			time.Sleep(3 * time.Second)
			logCopy(t, "steer-a", a.publicHTTP+"/"+name)
		})
}
