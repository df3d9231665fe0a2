package registry

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/shared/cluster"
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
		if err := w.resync(ctx, false); err != nil {
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

// latencySink signals when a watched stream name arrives.
type latencySink struct {
	nopSink
	want chan string
}

func (s latencySink) ApplyStreams(_ string, changes []cluster.StreamChange) {
	for _, c := range changes {
		if !c.Removed {
			select {
			case s.want <- c.Name:
			default:
			}
		}
	}
}

// BenchmarkPropagation is PutStream on an origin until the watcher's Sink sees it; it
// reports the p99 over the run.
func BenchmarkPropagation(b *testing.B) {
	srv := redistest.Standalone(b)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rc, _ := Dial(srv.URL())
	wc, _ := Dial(srv.URL())
	b.Cleanup(func() { _ = rc.Close(); _ = wc.Close() })
	reg, err := NewRegistrar(rc, "bench", testOrigin("o1"), RegistrarOptions{Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	sink := latencySink{want: make(chan string, 1)}
	w := NewWatcher(wc, "bench", sink, WatcherOptions{Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = reg.Run(ctx); done <- struct{}{} }()
	go func() { _ = w.Run(ctx); done <- struct{}{} }()
	b.Cleanup(func() { cancel(); <-done; <-done })
	for !w.Ready() {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // let the first heartbeat register the origin
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		name := "s" + strconv.Itoa(i)
		start := time.Now()
		reg.PutStream(cluster.Stream{Name: name, State: cluster.StreamRunning})
		for got := ""; got != name; {
			select {
			case got = <-sink.want:
			case <-time.After(5 * time.Second):
				b.Fatalf("stream %s never arrived", name)
			}
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
