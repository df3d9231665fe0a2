package e2e

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/origin/announce"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/origin/rtmpsrv"
	"github.com/peergate/peergate/origin/rtspsrv"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/registry"
)

// seenSink is a gateway-side view that stamps when each name turns running or disappears.
type seenSink struct {
	mu      sync.Mutex
	state   map[string]string
	changed chan struct{}
	at      map[string]time.Time // name + "|" + state ("" = gone) -> first time seen
}

func newSeenSink() *seenSink {
	return &seenSink{state: map[string]string{}, at: map[string]time.Time{}, changed: make(chan struct{}, 1)}
}

func (s *seenSink) set(name, state string) {
	if s.state[name] == state {
		return
	}
	if state == "" {
		delete(s.state, name)
	} else {
		s.state[name] = state
	}
	k := name + "|" + state
	if _, ok := s.at[k]; !ok {
		s.at[k] = time.Now()
	}
}

func (s *seenSink) ReplaceAll(views []registry.OriginView) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range views {
		for _, st := range v.Streams {
			s.set(st.Name, st.State)
		}
	}
}
func (s *seenSink) PutOrigin(cluster.Origin) {}
func (s *seenSink) PutStreams(_ string, list []cluster.Stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, st := range list {
		seen[st.Name] = true
		s.set(st.Name, st.State)
	}
	for n := range s.state {
		if !seen[n] {
			s.set(n, "")
		}
	}
}
func (s *seenSink) ApplyStreams(_ string, changes []cluster.StreamChange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range changes {
		if c.Removed {
			s.set(c.Name, "")
		} else {
			s.set(c.Name, c.State)
		}
	}
}
func (s *seenSink) DropOrigin(string) {}

// when waits until name reached state ("" = gone) and returns the time it was first seen so.
func (s *seenSink) when(t *testing.T, name, state string) time.Time {
	t.Helper()
	var at time.Time
	if !mediatest.Eventually(10*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		var ok bool
		at, ok = s.at[name+"|"+state]
		return ok
	}) {
		t.Fatalf("%s never became %q in the registry", name, state)
	}
	return at
}

// TestRegistryTransitions checks, through real Redis, that a published stream turns running
// in a gateway's view after its first key frame and is gone from it after its publisher
// leaves, each within seconds; how long each took is logged (a measurement, not a bound:
// a loaded machine may hold any of the processes involved).
func TestRegistryTransitions(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	const key = "transitions-cluster-key-0123456789"
	rc, err := registry.Dial(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	wc, err := registry.Dial(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	log := slog.New(slog.DiscardHandler)
	reg, err := registry.NewRegistrar(rc, key, cluster.Origin{
		ID: "media-1", Public: cluster.Public{"http": "http://media-1.invalid:8081"},
	}, registry.RegistrarOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	sink := newSeenSink()
	w := registry.NewWatcher(wc, key, sink, registry.WatcherOptions{Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { reg.Run(ctx) })
	wg.Go(func() { w.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	tbl := media.NewTable(media.Config{})
	tbl.Notify(announce.NewBook(reg, nil, nil))
	defer tbl.Close()
	rtmp := &rtmpsrv.Server{Address: "127.0.0.1:0", Table: tbl}
	if err := rtmp.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer rtmp.Close()
	rtsp := &rtspsrv.Server{Address: "127.0.0.1:0", Table: tbl}
	if err := rtsp.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer rtsp.Close()
	if !mediatest.Eventually(10*time.Second, w.Ready) {
		t.Fatal("watcher never ready")
	}

	for _, c := range []struct{ proto, name string }{{"rtmp", "live/t1"}, {"rtsp", "live/t2"}} {
		t.Run(c.proto, func(t *testing.T) {
			var pub *mediatest.Proc
			if c.proto == "rtmp" {
				pub = mediatest.PublishRTMP(t, "rtmp://"+rtmp.Addr().String()+"/"+c.name, mediatest.Source{})
			} else {
				pub = mediatest.PublishRTSP(t, "rtsp://"+rtsp.Addr().String()+"/"+c.name, "tcp", mediatest.Source{})
			}
			var st *media.Stream
			if !mediatest.Eventually(15*time.Second, func() bool { st = tbl.Get(c.name); return st != nil }) {
				t.Fatalf("never published: %s", pub.Output())
			}
			rd, err := st.AddReader(media.ReaderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			u, err := rd.Read(rctx)
			cancel()
			rd.Close()
			if err != nil || !u.KeyFrame {
				t.Fatalf("first unit: key frame %v, %v", u.KeyFrame, err)
			}
			keyAt := time.Now()
			// The reader may get the cached key frame a little after the registry heard of it,
			// so a negative figure is possible and means "before we could look".
			up := sink.when(t, c.name, cluster.StreamRunning).Sub(keyAt)
			pub.Stop()
			left := time.Now()
			gone := sink.when(t, c.name, "").Sub(left)
			t.Logf("%s: running in the gateway's view %v after the first key frame; gone %v after the publisher left", c.proto, up.Round(time.Microsecond), gone.Round(time.Microsecond))
			if up > 5*time.Second {
				t.Errorf("running %v after the first key frame, want within seconds", up)
			}
			if gone > 5*time.Second {
				t.Errorf("gone %v after the publisher left, want within seconds", gone)
			}
		})
	}
}
