package registry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/redis/go-redis/v9"
)

// failHGetAll fails the first n pipelines that read a stream list, as a read timeout would.
type failHGetAll struct{ n atomic.Int32 }

var errInjected = errors.New("injected read failure")

func (*failHGetAll) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*failHGetAll) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *failHGetAll) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if strings.EqualFold(c.Name(), "hgetall") && h.n.Add(-1) >= 0 {
				for _, c := range cmds {
					c.SetErr(errInjected)
				}
				return errInjected
			}
		}
		return next(ctx, cmds)
	}
}

// progressSink records how a snapshot reaches it, and whether the Watcher was ready then.
type progressSink struct {
	nopSink
	w *Watcher

	mu          sync.Mutex
	replaceAlls int
	putsBefore  int // PutStreams calls before Ready
	streams     map[string]int
}

func (s *progressSink) ReplaceAll(vs []OriginView) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replaceAlls++
	clear(s.streams)
	for _, v := range vs {
		s.streams[v.Origin.ID] = len(v.Streams)
	}
}

func (s *progressSink) PutStreams(id string, list []cluster.Stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.w.Ready() {
		s.putsBefore++
	}
	s.streams[id] = len(list)
}

func (s *progressSink) DropOrigin(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.streams, id)
}

// TestFirstSnapshotProgressiveAndRetried: the first snapshot hands each origin to the Sink
// before the Watcher is ready (no ReplaceAll), and an origin whose read failed is read again
// before Ready: the old snapshot skipped it and became ready without it.
func TestFirstSnapshotProgressiveAndRetried(t *testing.T) {
	srv := redistest.Standalone(t)
	c := dial(t, srv.URL())
	const key = "progressive-key"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ids := []string{"o1", "o2", "o3"}
	for _, id := range ids {
		reg, err := NewRegistrar(c, key, testOrigin(id), RegistrarOptions{TTL: time.Minute, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		reg.SetStreams(manyStreams(id, 100))
		if err := reg.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	wc := dial(t, srv.URL())
	hook := &failHGetAll{}
	hook.n.Store(2) // the first read and its first retry fail
	wc.AddHook(hook)
	sink := &progressSink{streams: map[string]int{}}
	w := NewWatcher(wc, key, sink, WatcherOptions{Logger: log})
	sink.w = w
	if err := w.resync(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if !w.Ready() || w.Stats().Origins != len(ids) {
		t.Fatalf("ready %v, stats %+v", w.Ready(), w.Stats())
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.replaceAlls != 0 || sink.putsBefore != len(ids) {
		t.Fatalf("first snapshot: %d ReplaceAll, %d PutStreams before ready; want 0 and %d", sink.replaceAlls, sink.putsBefore, len(ids))
	}
	for _, id := range ids {
		if sink.streams[id] != 100 {
			t.Fatalf("sink %v, want 100 streams for each of %v", sink.streams, ids)
		}
	}
}

// TestProgressiveSnapshotCutShort: a first snapshot stopped half-way takes back the origins
// it gave the Sink (none would ever expire) and leaves the Watcher not ready.
func TestProgressiveSnapshotCutShort(t *testing.T) {
	srv := redistest.Standalone(t)
	c := dial(t, srv.URL())
	const key = "cut-short-key"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, id := range []string{"o1", "o2", "o3", "o4"} {
		reg, err := NewRegistrar(c, key, testOrigin(id), RegistrarOptions{TTL: time.Minute, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		reg.SetStreams(manyStreams(id, snapshotStreams/2)) // two origins a batch: several batches
		if err := reg.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	sink := &cancelSink{progressSink: progressSink{streams: map[string]int{}}}
	w := NewWatcher(c, key, sink, WatcherOptions{Logger: log})
	sink.w = w
	ctx, cancel := context.WithCancel(context.Background())
	sink.cancel = cancel // the first origin in cancels the snapshot
	if err := w.resync(ctx, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("resync: %v, want context.Canceled", err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if w.Ready() || len(sink.streams) != 0 || sink.putsBefore == 0 {
		t.Fatalf("ready %v, sink %v after %d puts; want not ready and an empty sink", w.Ready(), sink.streams, sink.putsBefore)
	}
}

type cancelSink struct {
	progressSink
	cancel context.CancelFunc
}

func (s *cancelSink) PutStreams(id string, list []cluster.Stream) {
	s.progressSink.PutStreams(id, list)
	s.cancel()
}
