package cli

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/logtest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Lines reach the sink whole and in order while it keeps up.
func TestAsyncWriterDelivers(t *testing.T) {
	var out logtest.Buffer
	w := NewAsyncWriter(&out, 0, "")
	var want strings.Builder
	for i := range 1000 {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		if n, err := w.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if !w.Sync(10 * time.Second) {
		t.Fatal("Sync timed out")
	}
	if got := out.String(); got != want.String() {
		t.Fatalf("sink got %d bytes, want %d", len(got), want.Len())
	}
	if w.Dropped() != 0 {
		t.Fatalf("dropped %d", w.Dropped())
	}
	if !w.Close(10 * time.Second) {
		t.Fatal("Close timed out")
	}
	if _, _ = w.Write([]byte("late\n")); w.Dropped() != 1 {
		t.Fatalf("a write after Close: dropped %d, want 1", w.Dropped())
	}
}

// A sink nobody reads (a full pipe) never blocks a writer: lines are dropped and counted, the
// goroutine count stays flat, Close gives up after its timeout, and the flusher ends once the
// pipe breaks.
func TestAsyncWriterBlockedSink(t *testing.T) {
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	before := runtime.NumGoroutine()
	// Each half of the buffer (128 KiB) is more than the pipe holds (64 KiB), so the flusher
	// is surely stuck in a write at the end whatever the timing (with 64 KiB, a first batch
	// of one line and two full halves could all fit, and Close could flush cleanly).
	w := NewAsyncWriter(pw, 256<<10, "")
	reg := prometheus.NewRegistry()
	reg.MustRegister(LogDroppedCounter(w))

	line := []byte(strings.Repeat("x", 199) + "\n")
	const writers, lines = 8, 20000
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range lines {
				_, _ = w.Write(line)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("writers blocked on a sink nobody reads")
	}
	// The pipe holds at most 64 KiB and the buffer 256 KiB: almost everything was dropped.
	if d := w.Dropped(); d < writers*lines/2 {
		t.Fatalf("dropped %d of %d", d, writers*lines)
	}
	if got := testutil.ToFloat64(LogDroppedCounter(w)); got != float64(w.Dropped()) {
		t.Fatalf("peergate_log_dropped_total = %v, want %d", got, w.Dropped())
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Fatalf("%d goroutines, %d before", n, before)
	}
	if w.Close(100 * time.Millisecond) {
		t.Fatal("Close reported a clean flush into a pipe nobody reads")
	}
	r.Close() // the blocked write fails now; the flusher must end
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		t.Fatal("flusher still running after the pipe broke")
	}
}

func TestLogDroppedCounterOtherWriter(t *testing.T) {
	if got := testutil.ToFloat64(LogDroppedCounter(&logtest.Buffer{})); got != 0 {
		t.Fatalf("got %v", got)
	}
}

// BenchmarkAsyncWriter measures a Write against a direct write to a discarding sink.
func BenchmarkAsyncWriter(b *testing.B) {
	line := []byte(strings.Repeat("x", 199) + "\n")
	b.Run("direct", func(b *testing.B) {
		var mu sync.Mutex // what a shared sink costs a writer without the async stage
		var out bytes.Buffer
		for b.Loop() {
			mu.Lock()
			_, _ = out.Write(line)
			if out.Len() > 1<<20 {
				out.Reset()
			}
			mu.Unlock()
		}
	})
	b.Run("async", func(b *testing.B) {
		w := NewAsyncWriter(discard{}, 0, "")
		defer w.Close(time.Second)
		for b.Loop() {
			_, _ = w.Write(line)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// A prefix goes before every line, including lines inside one Write.
func TestAsyncWriterPrefix(t *testing.T) {
	var out logtest.Buffer
	w := NewAsyncWriter(&out, 0, "[gateway] ")
	_, _ = w.Write([]byte("a=1\n"))
	_, _ = w.Write([]byte("b=2\nc=3\n"))
	_, _ = w.Write([]byte("no newline"))
	if !w.Close(10 * time.Second) {
		t.Fatal("Close timed out")
	}
	if got, want := out.String(), "[gateway] a=1\n[gateway] b=2\n[gateway] c=3\n[gateway] no newline"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
