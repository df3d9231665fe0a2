package registry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/redis/go-redis/v9"
)

// Short timings keep the package fast; the defaults are 1 s / 3 s.
const (
	testHB  = 100 * time.Millisecond
	testTTL = 400 * time.Millisecond
	waitMax = 10 * time.Second
	// deltaBound is far above a delta's latency (milliseconds) and below the anti-entropy
	// period, so it tells a delta from a periodic re-read without timing a loaded machine.
	deltaBound = 4 * time.Second
	// roundTripTTL is TestRoundTrip's record TTL.
	roundTripTTL = 2 * time.Second
)

// testSink is a map-based Sink that wakes waiters on every change.
type testSink struct {
	mu       sync.Mutex
	origins  map[string]cluster.Origin
	streams  map[string]map[string]cluster.Stream
	replaces int
	notify   chan struct{}
}

var _ Sink = (*testSink)(nil)

func newTestSink() *testSink {
	return &testSink{origins: map[string]cluster.Origin{}, streams: map[string]map[string]cluster.Stream{}, notify: make(chan struct{})}
}

func (s *testSink) changed() { close(s.notify); s.notify = make(chan struct{}) }

func (s *testSink) ReplaceAll(views []OriginView) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.origins = map[string]cluster.Origin{}
	s.streams = map[string]map[string]cluster.Stream{}
	for _, v := range views {
		s.origins[v.Origin.ID] = v.Origin
		m := map[string]cluster.Stream{}
		for _, st := range v.Streams {
			m[st.Name] = st
		}
		s.streams[v.Origin.ID] = m
	}
	s.replaces++
	s.changed()
}

func (s *testSink) PutOrigin(o cluster.Origin) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.origins[o.ID]; !ok {
		s.streams[o.ID] = map[string]cluster.Stream{}
	}
	s.origins[o.ID] = o
	s.changed()
}

func (s *testSink) PutStreams(id string, list []cluster.Stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]cluster.Stream{}
	for _, st := range list {
		m[st.Name] = st
	}
	s.streams[id] = m
	s.changed()
}

func (s *testSink) ApplyStreams(id string, changes []cluster.StreamChange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.streams[id]
	if m == nil {
		m = map[string]cluster.Stream{}
		s.streams[id] = m
	}
	for _, c := range changes {
		if c.Removed {
			delete(m, c.Name)
		} else {
			m[c.Name] = c.Stream
		}
	}
	s.changed()
}

func (s *testSink) DropOrigin(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.origins, id)
	delete(s.streams, id)
	s.changed()
}

// view returns the origin record, whether it is held, and how many streams it has.
func (s *testSink) view(id string) (cluster.Origin, bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.origins[id]
	return o, ok, len(s.streams[id])
}

func (s *testSink) hasStream(id, name string) (cluster.Stream, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streams[id][name]
	return st, ok
}

// waitFor blocks until cond holds, waking on sink changes and every 10 ms; it returns the time taken.
func (s *testSink) waitFor(t *testing.T, what string, max time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(max)
	for {
		s.mu.Lock()
		ch := s.notify
		s.mu.Unlock()
		if cond() {
			return time.Since(start)
		}
		select {
		case <-ch:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s", max, what)
		}
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testOrigin(id string) cluster.Origin {
	return cluster.Origin{
		ID:       id,
		Public:   cluster.Public{"http": "http://" + id + ".example.com:8081", "rtsp": "rtsp://" + id + ".example.com:8555"},
		Capacity: cluster.Capacity{MaxClients: 100},
		Software: "peergate-test",
	}
}

func manyStreams(prefix string, n int) []cluster.Stream {
	out := make([]cluster.Stream, n)
	for i := range out {
		out[i] = cluster.Stream{Name: fmt.Sprintf("%s/s%05d", prefix, i), State: cluster.StreamRunning,
			Meta: cluster.StreamMeta{Codecs: "avc1.64001f,mp4a.40.2", Width: 1280, Height: 720, BitrateBps: 2_000_000}}
	}
	return out
}

func dial(t *testing.T, url string) redis.UniversalClient {
	t.Helper()
	c, err := Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// runner owns goroutines started by a test and stops them in Cleanup.
type runner struct {
	t  *testing.T
	wg sync.WaitGroup
}

func newRunner(t *testing.T) *runner {
	r := &runner{t: t}
	t.Cleanup(r.wg.Wait)
	return r
}

// start runs fn until the returned cancel (or the test's end) stops it.
func (r *runner) start(fn func(context.Context) error) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	r.t.Cleanup(cancel)
	r.wg.Go(func() {
		if err := fn(ctx); err != nil {
			r.t.Errorf("runner: %v", err)
		}
	})
	return func() { cancel() }
}

func newRegistrar(t *testing.T, c redis.UniversalClient, key string, rec cluster.Origin) *Registrar {
	t.Helper()
	return newRegistrarTTL(t, c, key, rec, testTTL)
}

// newRegistrarTTL is newRegistrar with another TTL (the heartbeat stays testHB).
func newRegistrarTTL(t *testing.T, c redis.UniversalClient, key string, rec cluster.Origin, ttl time.Duration) *Registrar {
	t.Helper()
	r, err := NewRegistrar(c, key, rec, RegistrarOptions{Heartbeat: testHB, TTL: ttl, Logger: testLogger(t),
		Load: func() cluster.Load { return cluster.Load{Clients: 3} }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// newWatcher allows the production default clock skew (registry.max_clock_skew, 1s): with the
// tests' 400 ms TTL and none, a loaded machine running -race delays heartbeats past their
// freshness (tests of the rule itself set their own).
func newWatcher(t *testing.T, c redis.UniversalClient, key string, sink Sink) *Watcher {
	return NewWatcher(c, key, sink, WatcherOptions{AntiEntropy: 5 * time.Second, MaxClockSkew: time.Second, Logger: testLogger(t)})
}

type topology struct {
	name  string
	start func(t *testing.T) string
}

var topologies = []topology{
	{"standalone", func(t *testing.T) string { return redistest.Standalone(t).URL() }},
	{"cluster", func(t *testing.T) string { return redistest.NewCluster(t).URL() }},
	{"sentinel", func(t *testing.T) string { return redistest.NewSentinel(t).URL() }},
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			t.Parallel()
			url := tp.start(t)
			const key = "round-trip-key"
			run := newRunner(t)
			sink := newTestSink()
			rc, wc := dial(t, url), dial(t, url)

			// A TTL of many heartbeats: three topologies run here at once on a loaded machine,
			// and a writer stalled past the TTL rightly makes watchers re-read (counted below).
			reg := newRegistrarTTL(t, rc, key, testOrigin("o1"), roundTripTTL)
			reg.SetStreams(manyStreams("live", 3000))
			run.start(reg.Run)
			w := newWatcher(t, wc, key, sink)
			run.start(w.Run)

			took := sink.waitFor(t, "3000 streams of o1", waitMax, func() bool {
				_, ok, n := sink.view("o1")
				return ok && n == 3000
			})
			t.Logf("initial 3000 streams visible after %s", took)
			if !w.Ready() || !w.Stats().Connected {
				t.Fatalf("ready %v stats %+v", w.Ready(), w.Stats())
			}
			if o, _, _ := sink.view("o1"); o.Load.Clients != 3 || o.State != cluster.StateUp || o.Public["http"] == "" {
				t.Fatalf("record %+v", o)
			}

			// Each change reaches the sink as a delta (no re-read). The latency is logged, not
			// asserted tightly: three topologies run in parallel here on a loaded machine (the
			// e2e tests and benchmarks measure it); the bound only catches a change that waited
			// for a heartbeat or anti-entropy instead of its delta.
			rereads := w.Stats().GapResyncs
			var slowest time.Duration
			timed := func(what string, change func(), cond func() bool) {
				start := time.Now()
				change()
				sink.waitFor(t, what, waitMax, cond)
				d := time.Since(start)
				slowest = max(slowest, d)
				if d > deltaBound {
					t.Errorf("%s took %s, want well under %s", what, d, deltaBound)
				}
			}
			for i := range 5 {
				name := fmt.Sprintf("new/cam%d", i)
				timed("add "+name, func() { reg.PutStream(cluster.Stream{Name: name, State: cluster.StreamOnDemand}) },
					func() bool { _, ok := sink.hasStream("o1", name); return ok })
				timed("update", func() {
					reg.RemoveStream("live/s00042")
					reg.PutStream(cluster.Stream{Name: "live/s00042", State: cluster.StreamRunning, Meta: cluster.StreamMeta{Width: i + 1}})
				}, func() bool { s, _ := sink.hasStream("o1", "live/s00042"); return s.Meta.Width == i+1 })
				timed("remove "+name, func() { reg.RemoveStream(name) },
					func() bool { _, ok := sink.hasStream("o1", name); return !ok })
			}
			t.Logf("slowest of 15 changes: %s", slowest)

			if st := w.Stats(); st.GapResyncs != rereads {
				t.Errorf("changes caused %d re-reads; deltas should have sufficed", st.GapResyncs-rereads)
			}

			// A second origin that dies without deregistering disappears after its TTL.
			reg2 := newRegistrarTTL(t, rc, key, testOrigin("o2"), roundTripTTL)
			reg2.SetStreams(manyStreams("o2", 3))
			stop2 := run.start(reg2.Run)
			sink.waitFor(t, "o2", waitMax, func() bool { _, ok, n := sink.view("o2"); return ok && n == 3 })
			stop2()
			took = sink.waitFor(t, "o2 expiry", waitMax, func() bool { _, ok, _ := sink.view("o2"); return !ok })
			if took > roundTripTTL+5*time.Second {
				t.Errorf("o2 expired after %s, TTL %s", took, roundTripTTL)
			}
			if w.Stats().Expired == 0 {
				t.Errorf("expiry not counted: %+v", w.Stats())
			}

			// Drain is visible at once; deregister removes the origin.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := reg.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			sink.waitFor(t, "draining", waitMax, func() bool { o, _, _ := sink.view("o1"); return o.State == cluster.StateDraining })
			if _, _, n := sink.view("o1"); n != 3000 {
				t.Fatalf("draining origin has %d streams", n)
			}
			if err := reg.Deregister(ctx); err != nil {
				t.Fatal(err)
			}
			sink.waitFor(t, "o1 gone", waitMax, func() bool { _, ok, _ := sink.view("o1"); return !ok })
			if n := wc.ZCard(ctx, keyspace{Namespace(key)}.origins()).Val(); n != 0 {
				// o2 may linger in the index until the grace period: only o1 must be gone.
				if wc.ZScore(ctx, keyspace{Namespace(key)}.origins(), "o1").Err() != redis.Nil {
					t.Errorf("o1 still in the index")
				}
			}
			if ex := wc.Exists(ctx, keyspace{Namespace(key)}.rec("o1"), keyspace{Namespace(key)}.streams("o1")).Val(); ex != 0 {
				t.Errorf("%d keys of o1 left after Deregister", ex)
			}
			if st := w.Stats(); st.SignatureFailures != 0 || st.InvalidRecords != 0 {
				t.Errorf("unexpected failures: %+v", st)
			}
		})
	}
}
