package ondemand

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/announce"
	"github.com/peergate/peergate/origin/filesrc"
	"github.com/peergate/peergate/origin/httpsrv"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/origin/rtmpsrv"
	"github.com/peergate/peergate/origin/rtspsrv"
	"github.com/peergate/peergate/shared/cluster"
)

func testLogger() *slog.Logger {
	if os.Getenv("ONDEMAND_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// logCounts counts log records by message: the sync point for things the Manager only logs.
type logCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *logCounts) get(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[msg]
}

// countingHandler passes records on to h and counts them in c.
type countingHandler struct {
	h slog.Handler
	c *logCounts
}

func (h countingHandler) Enabled(ctx context.Context, l slog.Level) bool { return true }
func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.c.mu.Lock()
	if h.c.n == nil {
		h.c.n = map[string]int{}
	}
	h.c.n[r.Message]++
	h.c.mu.Unlock()
	if !h.h.Enabled(ctx, r.Level) {
		return nil
	}
	return h.h.Handle(ctx, r)
}
func (h countingHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return countingHandler{h.h.WithAttrs(a), h.c}
}
func (h countingHandler) WithGroup(g string) slog.Handler {
	return countingHandler{h.h.WithGroup(g), h.c}
}

// recorder is a fake registry: it keeps the last state of every NAME and the history.
type recorder struct {
	mu      sync.Mutex
	state   map[string]cluster.Stream
	history []string
}

func newRecorder(initial []cluster.Stream) *recorder {
	r := &recorder{state: map[string]cluster.Stream{}}
	for _, s := range initial {
		r.state[s.Name] = s
	}
	return r
}

func (r *recorder) PutStream(s cluster.Stream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state[s.Name] = s
	r.history = append(r.history, s.Name+"="+s.State)
}

func (r *recorder) RemoveStream(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.state, name)
	r.history = append(r.history, name+"=removed")
}

func (r *recorder) get(name string) (cluster.Stream, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.state[name]
	return s, ok
}

// transitions is the history without repeats of the same state.
func (r *recorder) transitions() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, h := range r.history {
		if len(out) == 0 || out[len(out)-1] != h {
			out = append(out, h)
		}
	}
	return strings.Join(out, " ")
}

func (r *recorder) hist() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.history, " ")
}

// TestManagerNames: the on-demand NAMEs are listed ondemand and known to Has; Demand of any
// other NAME answers false.
func TestManagerNames(t *testing.T) {
	m := &Manager{Sources: []Source{{Name: "od/cam", URL: "rtsp://127.0.0.1:1/x"}}}
	if err := m.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	tbl := media.NewTable(media.Config{})
	t.Cleanup(tbl.Close)
	if got := m.Streams(); len(got) != 1 || got[0] != (cluster.Stream{Name: "od/cam", State: cluster.StreamOnDemand}) {
		t.Fatalf("Streams() = %+v", got)
	}
	if !m.Has("od/cam") || m.Has("live/x") {
		t.Fatalf("Has(od/cam) = %v, Has(live/x) = %v", m.Has("od/cam"), m.Has("live/x"))
	}
	if m.Demand(tbl, "live/x") {
		t.Fatal("Demand of a NAME that is not on-demand answered true")
	}
}

var sourceCases = []struct {
	desc string
	src  Source
	ok   bool
}{
	{"rtsp", Source{"a/b", "rtsp://h:554/x"}, true},
	{"rtmp", Source{"a", "rtmp://h/app/s"}, true},
	{"hls", Source{"a", "https://h/x/index.m3u8"}, true},
	{"bad name", Source{"a//b", "rtsp://h/x"}, false},
	{"bad scheme", Source{"a", "file:///etc/passwd"}, false},
	{"no host", Source{"a", "rtsp:///x"}, false},
}

func TestValidateSource(t *testing.T) {
	for _, c := range sourceCases {
		if err := ValidateSource(c.src); (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.desc, err)
		}
	}
}

// upstream is a second origin: a table with the looped demo clip, served over RTSP, RTMP and HLS.
type upstream struct {
	tbl  *media.Table
	rtsp *rtspsrv.Server
	rtmp *rtmpsrv.Server
	http *httpsrv.Server
	src  *filesrc.Source
}

func startUpstream(t *testing.T, name string) *upstream {
	t.Helper()
	u := &upstream{tbl: media.NewTable(media.Config{})}
	t.Cleanup(u.tbl.Close)
	u.rtsp = &rtspsrv.Server{Address: "127.0.0.1:0", Table: u.tbl, Logger: testLogger()}
	if err := u.rtsp.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.rtsp.Close)
	u.rtmp = &rtmpsrv.Server{Address: "127.0.0.1:0", Table: u.tbl, Logger: testLogger()}
	if err := u.rtmp.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.rtmp.Close)
	u.http = &httpsrv.Server{Address: "127.0.0.1:0", Table: u.tbl, Logger: testLogger()}
	if err := u.http.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.http.Close)
	u.src = &filesrc.Source{Name: name, Path: mediatest.Demo(t), Table: u.tbl, Logger: testLogger()}
	// Published before the HTTP server listens for events: start its (eager) muxer by hand.
	if err := u.src.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.src.Close)
	u.http.StreamRunning(name, cluster.StreamMeta{})
	return u
}

func (u *upstream) play(t *testing.T, name string) {
	t.Helper()
	u.src = &filesrc.Source{Name: name, Path: mediatest.Demo(t), Table: u.tbl, Logger: testLogger()}
	if err := u.src.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.src.Close)
}

func (u *upstream) url(name string) string { return "rtsp://" + u.rtsp.Addr().String() + "/" + name }

// origin is the origin under test: on-demand manager, table, registry events and HTTP.
type origin struct {
	m    *Manager
	tbl  *media.Table
	reg  *recorder
	http *httpsrv.Server
}

type originOpts struct {
	idle         time.Duration // Manager.IdleTimeout
	startTimeout time.Duration // Table's bound for a viewer waiting on a start
	mut          func(*httpsrv.Server)
	logs         *logCounts // counts the Manager's log records, if set
	cluster      Cluster    // Manager.Cluster (Self is "self")
	playToken    func(string) string
	grace        time.Duration // Manager.RelayGrace
}

func startOrigin(t *testing.T, sources []Source, oo originOpts) *origin {
	t.Helper()
	o := &origin{}
	o.m = &Manager{Sources: sources, IdleTimeout: oo.idle, RetryMin: 100 * time.Millisecond, RetryMax: time.Second,
		Timeout: 3 * time.Second, Logger: testLogger(), Cluster: oo.cluster, Self: "self", PlayToken: oo.playToken, RelayGrace: oo.grace}
	if oo.logs != nil {
		o.m.Logger = slog.New(countingHandler{o.m.Logger.Handler(), oo.logs})
	}
	o.reg = newRecorder(o.m.Streams())
	// Built in main.go's order: the manager, the table, the stream book, the HTTP server.
	o.tbl = media.NewTable(media.Config{Starter: o.m, StartTimeout: oo.startTimeout})
	t.Cleanup(o.tbl.Close)
	o.tbl.Notify(announce.NewBook(o.reg, nil, o.m))
	if err := o.m.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.m.Close) // runs before tbl.Close
	o.http = &httpsrv.Server{Address: "127.0.0.1:0", Table: o.tbl, Logger: testLogger()}
	if oo.mut != nil {
		oo.mut(o.http)
	}
	if err := o.http.Initialize(); err != nil {
		t.Fatal(err)
	}
	o.tbl.Notify(o.http)
	t.Cleanup(o.http.Close)
	return o
}

func (o *origin) url(path string) string { return "http://" + o.http.Addr().String() + path }

// demandAfter reports whether the pull of name noted demand (a start request or, from the
// idle watch, viewers) after t0.
func (o *origin) demandAfter(name string, t0 time.Time) bool {
	o.m.mu.Lock()
	defer o.m.mu.Unlock()
	p := o.m.pulls[name]
	return p != nil && p.demand.After(t0)
}

// TestOnDemandRTSP: a NAME pulled from another origin's RTSP URL is listed ondemand,
// starts on the first play request, plays, turns running, stops after the idle time and
// returns to ondemand; a second viewer (over HLS this time) starts it again.
func TestOnDemandRTSP(t *testing.T) {
	up := startUpstream(t, "cam")
	o := startOrigin(t, []Source{{Name: "remote/cam", URL: up.url("cam")}}, originOpts{
		idle: time.Second, mut: func(s *httpsrv.Server) { s.HLS.SessionTimeout = time.Second }})

	if s, _ := o.reg.get("remote/cam"); s.State != cluster.StreamOnDemand {
		t.Fatalf("before play: %+v, want ondemand", s)
	}
	if o.m.Pulling("remote/cam") || o.tbl.Get("remote/cam") != nil {
		t.Fatal("pulling before any viewer")
	}

	for round, path := range []string{"/remote/cam/mpegts", "/remote/cam/index.m3u8"} {
		start := time.Now()
		p, err := mediatest.ProbeStream(context.Background(), o.url(path), mediatest.ReadOptions{Frames: 50, Timeout: 30 * time.Second})
		if err != nil {
			t.Fatalf("round %d: %v; registry: %s", round, err, o.reg.hist())
		}
		t.Logf("round %d over %s: %+v in %v", round, path, p, time.Since(start).Round(time.Millisecond))
		if p.VideoCodec != "h264" || p.Width != 640 || p.Height != 360 || p.Frames < 50 {
			t.Fatalf("decoded %+v", p)
		}
		s, _ := o.reg.get("remote/cam")
		if s.State != cluster.StreamRunning || s.Meta.Width != 640 || !strings.HasPrefix(s.Meta.Codecs, "avc1.") {
			t.Fatalf("while playing: %+v, want running with metadata", s)
		}
		// The viewer left: after the idle time (plus the HLS session timeout) the pull stops.
		left := time.Now()
		if !mediatest.Eventually(10*time.Second, func() bool {
			s, _ := o.reg.get("remote/cam")
			return s.State == cluster.StreamOnDemand && !o.m.Pulling("remote/cam")
		}) {
			t.Fatalf("round %d: still pulling after the idle time; registry: %s", round, o.reg.hist())
		}
		t.Logf("round %d: back to ondemand %v after the viewer left", round, time.Since(left).Round(time.Millisecond))
		if o.tbl.Get("remote/cam") != nil {
			t.Fatal("stream still in the table")
		}
	}
	// Consecutive "running" entries are metadata (bitrate) updates.
	if got, want := o.reg.transitions(), "remote/cam=running remote/cam=ondemand remote/cam=running remote/cam=ondemand"; got != want {
		t.Fatalf("registry transitions %q, want %q", got, want)
	}
}

// TestOnDemandRetry: when the source drops while it still has viewers, the pull is retried
// with backoff and the stream comes back by itself; with nobody left it gives up after
// the idle time.
func TestOnDemandRetry(t *testing.T) {
	up := startUpstream(t, "cam")
	logs := &logCounts{}
	o := startOrigin(t, []Source{{Name: "remote/cam", URL: up.url("cam")}}, originOpts{idle: 2 * time.Second, logs: logs})

	st, rd, err := o.tbl.Subscribe(context.Background(), "remote/cam", media.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v := st.Join("test")
	joined := time.Now()
	mediatest.EventuallyT(t, 5*time.Second, func() bool { return o.demandAfter("remote/cam", joined) },
		"the idle watch never saw the viewer")

	up.src.Close() // the source drops
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		if _, err := rd.Read(ctx); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("reader after the source dropped: %v, want io.EOF", err)
			}
			break
		}
	}
	rd.Close()
	v.Leave()
	dropped := time.Now()
	// Two failures logged: the drop, then a retry against the missing stream.
	mediatest.EventuallyT(t, 10*time.Second, func() bool { return logs.get("on-demand pull failed") >= 2 },
		"no failed retry against the missing stream; registry: %s", o.reg.hist())
	up.play(t, "cam") // the source is back; nobody asks again
	if !mediatest.Eventually(10*time.Second, func() bool {
		s := o.tbl.Get("remote/cam")
		return s != nil && s != st
	}) {
		t.Fatalf("stream did not come back; registry: %s", o.reg.hist())
	}
	t.Logf("stream back %v after the source dropped", time.Since(dropped).Round(time.Millisecond))
	if !mediatest.Eventually(5*time.Second, func() bool { s, _ := o.reg.get("remote/cam"); return s.State == cluster.StreamRunning }) {
		t.Fatalf("registry after retry: %s", o.reg.hist())
	}

	// Nobody watches the new stream: it stops after the idle time and is not retried.
	up.src.Close()
	if !mediatest.Eventually(10*time.Second, func() bool { return !o.m.Pulling("remote/cam") }) {
		t.Fatalf("pull still retrying without viewers; registry: %s", o.reg.hist())
	}
	if s, _ := o.reg.get("remote/cam"); s.State != cluster.StreamOnDemand {
		t.Fatalf("final state %+v, want ondemand", s)
	}
}

// TestOnDemandUnreachable: a source that cannot be reached answers the viewer 404 within the
// Table's bound, and the pull gives up after the idle time.
func TestOnDemandUnreachable(t *testing.T) {
	o := startOrigin(t, []Source{{Name: "dead", URL: "rtsp://127.0.0.1:1/none"}}, originOpts{
		idle: 500 * time.Millisecond, startTimeout: time.Second})
	start := time.Now()
	_, err := o.tbl.Find(context.Background(), "dead")
	if err != media.ErrNotFound {
		t.Fatalf("Find = %v, want ErrNotFound", err)
	}
	// 8 s: generous, and short of the 10 s default, so the answer came from the bound set here.
	if el := time.Since(start); el > 8*time.Second {
		t.Fatalf("Find took %v", el)
	}
	t.Logf("Find answered ErrNotFound after %v (start bound 1 s)", time.Since(start).Round(time.Millisecond))
	if !mediatest.Eventually(5*time.Second, func() bool { return !o.m.Pulling("dead") }) {
		t.Fatal("pull of an unreachable source never gave up")
	}
	res, err := http.Get(o.url("/nothere/index.m3u8"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Fatalf("unknown = %d", res.StatusCode)
	}
}

// TestOnDemandProtocols: RTMP and HLS sources pull as well as RTSP.
func TestOnDemandProtocols(t *testing.T) {
	up := startUpstream(t, "live/cam")
	o := startOrigin(t, []Source{
		{Name: "via/rtmp", URL: "rtmp://" + up.rtmp.Addr().String() + "/live/cam"},
		{Name: "via/hls", URL: "http://" + up.http.Addr().String() + "/live/cam/index.m3u8"},
	}, originOpts{idle: time.Second})
	// gohlslib's client starts three segments from the live edge: wait until the upstream has them.
	if !mediatest.Eventually(15*time.Second, func() bool {
		res, err := http.Get("http://" + up.http.Addr().String() + "/live/cam/main_stream.m3u8")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return strings.Count(string(b), "#EXTINF") >= 3
	}) {
		t.Fatal("upstream HLS never had three segments")
	}
	for _, name := range []string{"via/rtmp", "via/hls"} {
		t.Run(name, func(t *testing.T) {
			p, err := mediatest.ProbeStream(context.Background(), o.url("/"+name+"/mpegts"), mediatest.ReadOptions{Frames: 50, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatalf("%v; registry: %s", err, o.reg.hist())
			}
			t.Logf("%s: %+v", name, p)
			if p.VideoCodec != "h264" || p.Width != 640 || p.Height != 360 || p.Frames < 50 {
				t.Fatalf("decoded %+v", p)
			}
			if !mediatest.Eventually(10*time.Second, func() bool { return !o.m.Pulling(name) }) {
				t.Fatal("pull did not stop after the idle time")
			}
		})
	}
}

// FuzzValidateSource: an accepted source always has a valid NAME and a pullable scheme and host.
func FuzzValidateSource(f *testing.F) {
	for _, c := range sourceCases {
		f.Add(c.src.Name, c.src.URL)
	}
	f.Fuzz(func(t *testing.T, name, raw string) {
		if ValidateSource(Source{Name: name, URL: raw}) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || !strings.Contains("rtsp rtsps rtmp rtmps http https", u.Scheme) || u.Scheme == "" {
			t.Fatalf("accepted %q %q", name, raw)
		}
	})
}
