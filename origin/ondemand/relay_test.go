package ondemand

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/filesrc"
	"github.com/peergate/peergate/origin/httpsrv"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/origin/rtspsrv"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/pubauth"
)

func carrier(id, upstream string, opts ...func(*cluster.Origin)) cluster.Carrier {
	c := cluster.Carrier{
		Origin: cluster.Origin{ID: id, State: cluster.StateUp, Private: id + ".internal",
			Public:   cluster.Public{"rtsp": "rtsp://" + id + ".example.com:8554", "http": "http://" + id + ".example.com:8080"},
			Capacity: cluster.Capacity{MaxClients: 10}},
		Stream: cluster.Stream{Name: "live/cam", State: cluster.StreamRunning, Upstream: upstream},
	}
	for _, f := range opts {
		f(&c.Origin)
	}
	return c
}

func clients(n int64) func(*cluster.Origin) { return func(o *cluster.Origin) { o.Load.Clients = n } }
func drainingOrigin(o *cluster.Origin)      { o.State = cluster.StateDraining }

func TestChooseUpstream(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		carriers []cluster.Carrier
		maxDepth int
		want     string // origin id, "" for none
		depth    int
	}{
		{desc: "nothing runs it", want: ""},
		{desc: "the owner", carriers: []cluster.Carrier{carrier("own", "")}, want: "own", depth: 1},
		{desc: "owner before a less loaded relay",
			carriers: []cluster.Carrier{carrier("own", "", clients(8)), carrier("r1", "own", clients(0))}, want: "own", depth: 1},
		{desc: "owner full: a relay of it",
			carriers: []cluster.Carrier{carrier("own", "", clients(10)), carrier("r1", "own", clients(3))}, want: "r1", depth: 2},
		{desc: "owners full, relays full: the least loaded owner",
			carriers: []cluster.Carrier{carrier("own", "", clients(12)), carrier("own2", "", clients(10)), carrier("r1", "own", clients(10))}, want: "own2", depth: 1},
		{desc: "never itself",
			carriers: []cluster.Carrier{carrier("self", "")}, want: ""},
		{desc: "no cycle: never a relay that pulls from us",
			carriers: []cluster.Carrier{carrier("own", "", clients(10)), carrier("r1", "self", clients(0))}, want: "own", depth: 1},
		{desc: "no cycle through two hops",
			carriers: []cluster.Carrier{carrier("own", "", clients(10)), carrier("r1", "self"), carrier("r2", "r1")}, want: "own", depth: 1},
		{desc: "a broken chain is not trusted",
			carriers: []cluster.Carrier{carrier("r1", "gone")}, want: ""},
		{desc: "a loop is not trusted",
			carriers: []cluster.Carrier{carrier("r1", "r2"), carrier("r2", "r1")}, want: ""},
		{desc: "depth bounded",
			carriers: []cluster.Carrier{carrier("own", "", clients(10)), carrier("r1", "own", clients(10)), carrier("r2", "r1")}, maxDepth: 2, want: "own", depth: 1},
		{desc: "shallower relay first",
			carriers: []cluster.Carrier{carrier("own", "", clients(10)), carrier("r1", "own", clients(5)), carrier("r2", "r1", clients(0))}, want: "r1", depth: 2},
		{desc: "up before draining",
			carriers: []cluster.Carrier{carrier("own", "", drainingOrigin), carrier("own2", "", clients(9))}, want: "own2", depth: 1},
		{desc: "an origin with neither RTSP nor RTMP is skipped",
			carriers: []cluster.Carrier{carrier("own", "", func(o *cluster.Origin) { delete(o.Public, "rtsp") })}, want: ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			up, ok := ChooseUpstream(tc.carriers, "self", "live/cam", tc.maxDepth)
			if tc.want == "" {
				if ok {
					t.Fatalf("got %+v, want none", up)
				}
				return
			}
			if !ok || up.ID != tc.want || up.Depth != tc.depth {
				t.Fatalf("got %+v (%v), want %s at depth %d", up, ok, tc.want, tc.depth)
			}
			if want := "rtsp://" + tc.want + ".internal:8554/live/cam"; up.URL != want {
				t.Fatalf("URL %q, want %q (private host, public RTSP port)", up.URL, want)
			}
		})
	}
}

// fakeCluster answers FindStream from a fixed list and counts the calls.
type fakeCluster struct {
	mu       sync.Mutex
	carriers []cluster.Carrier
	err      error
	calls    atomic.Int64
}

func (f *fakeCluster) FindStream(_ context.Context, name string) ([]cluster.Carrier, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []cluster.Carrier
	for _, c := range f.carriers {
		if c.Stream.Name == name {
			out = append(out, c)
		}
	}
	return out, f.err
}

// TestRelayPullThrough: an origin asked for a NAME that runs on another origin of the cluster
// pulls it from there once for all its viewers, lists it as a relay of that origin, serves
// it, and stops IdleTimeout after its viewers left (the NAME then leaves its list). A NAME
// the cluster does not run is a quick 404, and asking again soon does not ask the registry.
func TestRelayPullThrough(t *testing.T) {
	// The owner: a table fed by the demo clip, served over RTSP; its log counts plays.
	owner := media.NewTable(media.Config{})
	t.Cleanup(owner.Close)
	plays := &logCounts{}
	ownerRTSP := &rtspsrv.Server{Address: "127.0.0.1:0", Table: owner, Logger: slog.New(countingHandler{testLogger().Handler(), plays})}
	if err := ownerRTSP.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ownerRTSP.Close)
	src := &filesrc.Source{Name: "live/cam", Path: mediatest.Demo(t), Table: owner, Logger: testLogger()}
	if err := src.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)

	fc := &fakeCluster{carriers: []cluster.Carrier{{
		Origin: cluster.Origin{ID: "own", State: cluster.StateUp, Private: "127.0.0.1",
			Public: cluster.Public{"rtsp": "rtsp://owner.example.com:" + portOf(t, ownerRTSP.Addr().String())}},
		Stream: cluster.Stream{Name: "live/cam", State: cluster.StreamRunning},
	}}}
	// An HLS viewer counts once its session has a playlist; the idle time must outlast the
	// first segment on a loaded machine, or the pull may stop under a viewer still waiting.
	o := startOrigin(t, nil, originOpts{idle: 3 * time.Second, cluster: fc, startTimeout: 10 * time.Second,
		mut: func(s *httpsrv.Server) { s.HLS.SessionTimeout = time.Second }})

	// Three viewers at once, over MPEG-TS and HLS.
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for _, path := range []string{"/live/cam/mpegts", "/live/cam/mpegts", "/live/cam/index.m3u8"} {
		wg.Go(func() {
			p, err := mediatest.ProbeStream(context.Background(), o.url(path), mediatest.ReadOptions{Frames: 30, Timeout: 40 * time.Second})
			if err == nil && (p.VideoCodec != "h264" || p.Frames < 30) {
				err = errors.New("decoded too little: " + p.VideoCodec)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("viewer: %v; registry: %s", err, o.reg.hist())
		}
	}
	if n := plays.get("rtsp play"); n != 1 {
		t.Errorf("the owner served %d RTSP plays, want 1 (one pull for all viewers)", n)
	}
	if n := fc.calls.Load(); n != 1 {
		t.Errorf("%d registry lookups, want 1", n)
	}
	if s, ok := o.reg.get("live/cam"); !ok || s.State != cluster.StreamRunning || s.Upstream != "own" {
		t.Errorf("listed %+v (%v), want running as a relay of own", s, ok)
	}
	if !mediatest.Eventually(20*time.Second, func() bool {
		_, listed := o.reg.get("live/cam")
		return !listed && !o.m.Pulling("live/cam")
	}) {
		t.Fatalf("relay still running after its viewers left; registry: %s", o.reg.hist())
	}

	// Not in the cluster: 404 without waiting for the start timeout.
	start := time.Now()
	resp, err := http.Get(o.url("/live/nope/mpegts"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown NAME: status %d", resp.StatusCode)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("unknown NAME took %v: it waited for a start", d)
	}
	// The answer is remembered a moment: asking again at once does not ask the registry.
	before := fc.calls.Load()
	if o.m.Demand(o.tbl, "live/nope2") || o.m.Demand(o.tbl, "live/nope2") {
		t.Fatal("Demand of a NAME the cluster does not run answered true")
	}
	if n := fc.calls.Load() - before; n != 1 {
		t.Errorf("two demands for an unknown NAME asked the registry %d times, want 1", n)
	}
}

// TestRelayRegistryDown: a failing lookup is a 404, not a hang, and starts nothing.
func TestRelayRegistryDown(t *testing.T) {
	fc := &fakeCluster{err: errors.New("redis is away")}
	o := startOrigin(t, nil, originOpts{idle: time.Second, cluster: fc})
	if o.m.Demand(o.tbl, "live/cam") || o.m.Pulling("live/cam") {
		t.Fatal("a relay started without an upstream")
	}
	if o.m.Demand(o.tbl, "../bad") || fc.calls.Load() != 1 {
		t.Fatalf("an invalid NAME reached the registry (%d lookups)", fc.calls.Load())
	}
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i+1:]
		}
	}
	t.Fatalf("no port in %q", addr)
	return ""
}

// TestRelayPlayToken: an upstream that checks play tokens refuses a relay pull without one
// and serves one that presents PlayToken's.
func TestRelayPlayToken(t *testing.T) {
	const secret = "relay-play-secret-0123456789"
	owner := media.NewTable(media.Config{})
	t.Cleanup(owner.Close)
	ownerRTSP := &rtspsrv.Server{Address: "127.0.0.1:0", Table: owner, Logger: testLogger(), AuthorizePlay: pubauth.PlayAuthorizer(secret)}
	if err := ownerRTSP.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ownerRTSP.Close)
	src := &filesrc.Source{Name: "live/cam", Path: mediatest.Demo(t), Table: owner, Logger: testLogger()}
	if err := src.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	fc := &fakeCluster{carriers: []cluster.Carrier{{
		Origin: cluster.Origin{ID: "own", State: cluster.StateUp, Public: cluster.Public{"rtsp": "rtsp://" + ownerRTSP.Addr().String()}},
		Stream: cluster.Stream{Name: "live/cam", State: cluster.StreamRunning},
	}}}

	logs := &logCounts{}
	without := startOrigin(t, nil, originOpts{idle: time.Second, cluster: fc, startTimeout: 3 * time.Second, logs: logs})
	if !without.m.Demand(without.tbl, "live/cam") {
		t.Fatal("relay not started")
	}
	if !mediatest.Eventually(15*time.Second, func() bool { return logs.get("on-demand pull failed") > 0 }) {
		t.Fatal("a pull without a token was not refused")
	}
	if without.tbl.Get("live/cam") != nil {
		t.Fatal("published without a token")
	}

	with := startOrigin(t, nil, originOpts{idle: time.Second, cluster: fc, startTimeout: 10 * time.Second,
		playToken: func(name string) string {
			return pubauth.TokenQuery(secret, name, time.Now().Add(time.Minute).Unix(), "")
		}})
	p, err := mediatest.ProbeStream(context.Background(), with.url("/live/cam/mpegts"), mediatest.ReadOptions{Frames: 25, Timeout: 30 * time.Second})
	if err != nil || p.Frames < 25 {
		t.Fatalf("relay with a play token: %+v, %v", p, err)
	}
}

// TestChooseUpstreamAvoids: the upstream whose pull just failed is taken only when nothing
// else qualifies, whatever its rank (the registry lists a dead origin until its TTL runs out).
func TestChooseUpstreamAvoids(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		carriers []cluster.Carrier
		avoid    string
		want     string
	}{
		{"a full owner rather than the failed relay",
			[]cluster.Carrier{carrier("own", "", clients(10)), carrier("r1", "own", clients(1))}, "r1", "own"},
		{"another relay rather than the failed one",
			[]cluster.Carrier{carrier("own", "", clients(10)), carrier("r1", "own", clients(1)), carrier("r2", "own", clients(5))}, "r1", "r2"},
		{"the failed one when nothing else runs it",
			[]cluster.Carrier{carrier("own", "")}, "own", "own"},
		{"avoiding none keeps the ranking",
			[]cluster.Carrier{carrier("own", "", clients(10)), carrier("r1", "own", clients(1))}, "", "r1"},
	} {
		up, ok := chooseUpstream(tc.carriers, "self", "live/cam", 0, tc.avoid)
		if !ok || up.ID != tc.want {
			t.Errorf("%s: got %+v (%v), want %s", tc.desc, up, ok, tc.want)
		}
	}
}

// servedOrigin is an RTSP origin serving the demo clip as live/cam, for relays to pull.
func servedOrigin(t *testing.T, id string, logs *logCounts) (*rtspsrv.Server, cluster.Carrier) {
	t.Helper()
	tbl := media.NewTable(media.Config{})
	t.Cleanup(tbl.Close)
	srv := &rtspsrv.Server{Address: "127.0.0.1:0", Table: tbl, Logger: slog.New(countingHandler{testLogger().Handler(), logs})}
	if err := srv.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	src := &filesrc.Source{Name: "live/cam", Path: mediatest.Demo(t), Table: tbl, Logger: testLogger()}
	if err := src.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	return srv, cluster.Carrier{
		Origin: cluster.Origin{ID: id, State: cluster.StateUp, Public: cluster.Public{"rtsp": "rtsp://" + srv.Addr().String()}},
		Stream: cluster.Stream{Name: "live/cam", State: cluster.StreamRunning},
	}
}

// TestRelayUpstreamDies: a relay pulling from an origin that dies re-resolves at once and
// moves to another origin running the stream, although the registry still lists the dead
// one (its TTL has not run out); it lists its new upstream and serves viewers again.
func TestRelayUpstreamDies(t *testing.T) {
	aLogs, bLogs := &logCounts{}, &logCounts{}
	aSrv, a := servedOrigin(t, "a-first", aLogs) // ranks first: same load, lower id
	_, b := servedOrigin(t, "b-second", bLogs)
	fc := &fakeCluster{carriers: []cluster.Carrier{a, b}}
	o := startOrigin(t, nil, originOpts{idle: 10 * time.Second, cluster: fc, startTimeout: 10 * time.Second})

	p, err := mediatest.ProbeStream(context.Background(), o.url("/live/cam/mpegts"), mediatest.ReadOptions{Frames: 10, Timeout: 30 * time.Second})
	if err != nil || p.Frames < 10 {
		t.Fatalf("viewer through the relay: %+v, %v", p, err)
	}
	if s, ok := o.reg.get("live/cam"); !ok || s.Upstream != "a-first" || aLogs.get("rtsp play") != 1 {
		t.Fatalf("listed %+v (%v) after %d plays at a-first, want a relay of a-first", s, ok, aLogs.get("rtsp play"))
	}

	aSrv.Close() // a-first dies; fc still lists it, as the registry does until the TTL
	// A viewer keeps asking, as players of a dropped stream do.
	moved := mediatest.Eventually(20*time.Second, func() bool {
		o.m.Demand(o.tbl, "live/cam")
		s, ok := o.reg.get("live/cam")
		return ok && s.State == cluster.StreamRunning && s.Upstream == "b-second"
	})
	if !moved {
		t.Fatalf("the relay did not move to b-second; registry: %s", o.reg.hist())
	}
	if n := bLogs.get("rtsp play"); n != 1 {
		t.Errorf("b-second served %d plays, want 1", n)
	}
	p, err = mediatest.ProbeStream(context.Background(), o.url("/live/cam/mpegts"), mediatest.ReadOptions{Frames: 10, Timeout: 30 * time.Second})
	if err != nil || p.Frames < 10 {
		t.Fatalf("viewer after the move: %+v, %v", p, err)
	}
}
