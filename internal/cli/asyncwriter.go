package cli

import (
	"bytes"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultLogBuffer is how many bytes of log lines AsyncWriter holds while its sink is busy
// (about 4,000 access lines); the flusher writes the other half meanwhile.
const DefaultLogBuffer = 1 << 20

// linger is how long the flusher lets lines gather after the first one arrives.
const linger = 5 * time.Millisecond

// AsyncWriter is the process log sink: Write copies a line into a bounded buffer and returns
// at once; one goroutine writes what accumulated to the underlying writer in large batches.
// When the buffer is full because the sink is slower than the traffic (a terminal, a pipe
// nobody reads, a full disk) the line is dropped and counted, never waited for: a redirect
// must not wait on its log line. Each Write is kept or dropped whole, so lines never tear.
type AsyncWriter struct {
	out    io.Writer
	limit  int
	prefix []byte

	mu      sync.Mutex
	cur     []byte // filled by Write; swapped with the flusher's buffer
	spare   []byte // the buffer the flusher is not writing
	closed  bool
	queued  uint64 // bytes accepted so far
	written atomic.Uint64
	dropped atomic.Uint64

	wake chan struct{} // capacity 1: coalesces wake-ups
	stop chan struct{} // closed by Close: cuts the linger short
	done chan struct{} // closed when the flusher has ended
}

// NewAsyncWriter starts the flusher for out with a buffer of size bytes (half fills while the
// other half is written); size <= 0 means DefaultLogBuffer. A non-empty prefix is put before
// every line (make demo labels each process's lines so, without a prefixing pipe).
func NewAsyncWriter(out io.Writer, size int, prefix string) *AsyncWriter {
	if size <= 0 {
		size = DefaultLogBuffer
	}
	half := max(size/2, 256)
	w := &AsyncWriter{
		out:    out,
		limit:  half,
		prefix: []byte(prefix),
		cur:    make([]byte, 0, half),
		spare:  make([]byte, 0, half),
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go w.flusher()
	return w
}

// Write queues p whole or drops it; it never blocks on the sink and never fails.
func (w *AsyncWriter) Write(p []byte) (int, error) {
	need := len(p)
	if len(w.prefix) > 0 {
		need += len(w.prefix) * (1 + bytes.Count(p[:max(len(p)-1, 0)], newline))
	}
	w.mu.Lock()
	if w.closed || len(w.cur)+need > w.limit {
		w.mu.Unlock()
		w.dropped.Add(1)
		return len(p), nil
	}
	if len(w.prefix) == 0 {
		w.cur = append(w.cur, p...)
	} else {
		for rest := p; len(rest) > 0; {
			line := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				line = rest[:i+1]
			}
			w.cur = append(append(w.cur, w.prefix...), line...)
			rest = rest[len(line):]
		}
	}
	w.queued += uint64(need)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// Dropped is how many writes (log lines) were dropped so far.
func (w *AsyncWriter) Dropped() uint64 { return w.dropped.Load() }

var newline = []byte{'\n'}

func (w *AsyncWriter) flusher() {
	defer close(w.done)
	var batch []byte
	for {
		w.mu.Lock()
		batch, w.cur = w.cur, w.spare[:0]
		closed := w.closed
		w.mu.Unlock()
		if len(batch) > 0 {
			_, _ = w.out.Write(batch) // a failing sink loses the batch; nothing else to do
			w.written.Add(uint64(len(batch)))
		}
		w.mu.Lock()
		w.spare = batch[:0]
		w.mu.Unlock()
		if len(batch) > 0 {
			continue
		}
		if closed {
			return
		}
		<-w.wake
		// Let lines gather: one write per linger instead of one per line at line rate. A
		// line waits at most this long; Close does not wait for it.
		w.mu.Lock()
		closed = w.closed
		w.mu.Unlock()
		if !closed {
			select {
			case <-time.After(linger):
			case <-w.stop:
			}
		}
	}
}

// Close stops accepting lines, writes what is buffered and returns when done or after
// timeout, whichever first (a sink that never drains cannot hold the process); it reports
// whether everything was written. Later writes are dropped and counted.
func (w *AsyncWriter) Close(timeout time.Duration) bool {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.stop)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
		return true
	case <-t.C:
		return false
	}
}

// Sync waits up to timeout until every line accepted before the call has been handed to the
// sink; it reports whether that happened.
func (w *AsyncWriter) Sync(timeout time.Duration) bool {
	w.mu.Lock()
	target := w.queued
	w.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for w.written.Load() < target {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// LogDroppedCounter is peergate_log_dropped_total for a registry: the log lines the process
// sink dropped because it could not keep up. It reads Dropped from logOut when logOut is an
// *AsyncWriter (what Main passes) and is 0 otherwise (tests writing to a buffer).
func LogDroppedCounter(logOut any) prometheus.Collector {
	aw, _ := logOut.(*AsyncWriter)
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "peergate_log_dropped_total",
		Help: "Log lines dropped because the log sink was slower than the traffic (never waited for).",
	}, func() float64 {
		if aw == nil {
			return 0
		}
		return float64(aw.Dropped())
	})
}
