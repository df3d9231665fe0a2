package registry

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/redistest"
)

type nopSink struct{}

func (nopSink) ReplaceAll([]OriginView)                     {}
func (nopSink) PutOrigin(cluster.Origin)                    {}
func (nopSink) PutStreams(string, []cluster.Stream)         {}
func (nopSink) ApplyStreams(string, []cluster.StreamChange) {}
func (nopSink) DropOrigin(string)                           {}

func benchRegistrar(b *testing.B, n int) (*Registrar, *Watcher) {
	srv := redistest.Standalone(b)
	c, err := Dial(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := NewRegistrar(c, "bench", testOrigin("o1"), RegistrarOptions{TTL: time.Minute, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	reg.SetStreams(manyStreams("live", n))
	if err := reg.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	return reg, NewWatcher(c, "bench", nopSink{}, WatcherOptions{Logger: log})
}

// BenchmarkSnapshot10k is a gateway's full read of one origin with 10,000 streams.
func BenchmarkSnapshot10k(b *testing.B) {
	_, w := benchRegistrar(b, 10000)
	ctx := context.Background()
	for b.Loop() {
		if err := w.resync(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if w.Stats().Origins != 1 {
		b.Fatalf("stats %+v", w.Stats())
	}
}

// BenchmarkRewrite10k is an origin's whole-list rewrite of 10,000 streams.
func BenchmarkRewrite10k(b *testing.B) {
	reg, _ := benchRegistrar(b, 10000)
	ctx := context.Background()
	for b.Loop() {
		reg.dirty = true
		if err := reg.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDelta is one stream change written and published.
func BenchmarkDelta(b *testing.B) {
	reg, _ := benchRegistrar(b, 1000)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		reg.PutStream(cluster.Stream{Name: "x", State: cluster.StreamRunning, Meta: cluster.StreamMeta{Width: i}})
		if err := reg.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
