package registry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/registry"
)

const coldKey = "cold-start-cluster-key"

func coldName(i int) string { return "live/s" + strconv.Itoa(i) }

func coldOrigin(o int) cluster.Origin {
	return cluster.Origin{
		ID: fmt.Sprintf("o%d", o),
		Public: cluster.Public{
			"http": fmt.Sprintf("http://origin%d.example.com:8081", o),
			"rtsp": fmt.Sprintf("rtsp://origin%d.example.com:8555", o),
		},
		Capacity: cluster.Capacity{MaxClients: 1000},
	}
}

// fillCold writes streams names (coldName(i) on origin i mod origins) the way origins do,
// with registry.Registrar's own whole-list write, several origins at a time. The records live
// for ttl without heartbeats, long enough for a measurement.
func fillCold(tb testing.TB, url string, origins, streams int, ttl time.Duration) {
	tb.Helper()
	c, err := registry.Dial(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	quiet := slog.New(slog.DiscardHandler)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	errs := make(chan error, origins)
	for o := range origins {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			reg, err := registry.NewRegistrar(c, coldKey, coldOrigin(o), registry.RegistrarOptions{Logger: quiet, TTL: ttl})
			if err != nil {
				errs <- err
				return
			}
			list := make([]cluster.Stream, 0, streams/origins+1)
			for i := o; i < streams; i += origins {
				list = append(list, cluster.Stream{Name: coldName(i), State: cluster.StreamRunning,
					Meta: cluster.StreamMeta{Codecs: "avc1.64001f,mp4a.40.2", Width: 1280, Height: 720, BitrateBps: 2_000_000}})
			}
			reg.SetStreams(list)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			if err := reg.Flush(ctx); err != nil {
				errs <- fmt.Errorf("origin o%d: %w", o, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// coldRun is one gateway cold start: a Watcher feeding a resolve.Table from a filled registry.
type coldRun struct {
	first, full time.Duration // to the first correct resolve of a probe, to the first full snapshot
	cpu         time.Duration // the process's CPU time (user+system) until the full snapshot
	heapMiB     float64       // live heap after the load (after a GC)
	rssMiB      float64       // the process's VmRSS then
}

// coldStart starts a Watcher on url and measures it until its first full snapshot; the probe
// stream must then resolve to its origin. It returns the table for further checks.
func coldStart(tb testing.TB, url string, origins, streams int) (coldRun, *resolve.Table) {
	tb.Helper()
	c, err := registry.Dial(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	runtime.GC()
	debug.FreeOSMemory()
	table := resolve.New(resolve.Options{})
	w := registry.NewWatcher(c, coldKey, table, registry.WatcherOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	probe := streams - 1
	want := coldOrigin(probe % origins).ID
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	cpu0 := cpuTime()
	start := time.Now()
	go func() { _ = w.Run(ctx); close(done) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			tb.Error("watcher did not stop")
		}
	})
	var run coldRun
	deadline := start.Add(5 * time.Minute)
	for run.first == 0 || run.full == 0 {
		if time.Now().After(deadline) {
			tb.Fatalf("no full snapshot within 5 minutes: %+v", w.Stats())
		}
		if run.first == 0 {
			if r := table.Resolve(resolve.Request{Name: coldName(probe), Proto: resolve.ProtoHTTP}); r.Outcome == resolve.OK {
				if r.OriginID != want {
					tb.Fatalf("probe resolved to %s, want %s", r.OriginID, want)
				}
				run.first = time.Since(start)
			}
		}
		if run.full == 0 && w.Ready() {
			run.full = time.Since(start)
			run.cpu = cpuTime() - cpu0
		}
		time.Sleep(time.Millisecond)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	run.heapMiB = float64(ms.HeapAlloc) / (1 << 20)
	run.rssMiB = float64(vmRSSKiB()) / 1024
	return run, table
}

// cpuTime is the process's user+system CPU time: on a shared machine, what the load cost
// whatever the other processes took.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func vmRSSKiB() int {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}

// TestColdStartBulkLoad is the cold-start path scaled down: every stream of a registry of
// 20,000 streams over 20 origins resolves to the origin that lists it once the first snapshot
// is in, and the Watcher counts every origin.
func TestColdStartBulkLoad(t *testing.T) {
	const origins, streams = 20, 20000
	srv := redistest.Standalone(t)
	fillCold(t, srv.URL(), origins, streams, 10*time.Minute)
	_, table := coldStart(t, srv.URL(), origins, streams)
	if got := len(table.Origins()); got != origins {
		t.Fatalf("%d origins in the table, want %d", got, origins)
	}
	for i := range streams {
		r := table.Resolve(resolve.Request{Name: coldName(i), Proto: resolve.ProtoHTTP})
		if want := coldOrigin(i % origins); r.Outcome != resolve.OK || r.OriginID != want.ID || r.BaseURL != want.Public["http"] {
			t.Fatalf("stream %s: %+v, want %s at %s", coldName(i), r, want.ID, want.Public["http"])
		}
	}
	if r := table.Resolve(resolve.Request{Name: coldName(streams), Proto: resolve.ProtoHTTP}); r.Outcome != resolve.NotFound {
		t.Fatalf("unknown stream: %+v", r)
	}
}

// BenchmarkColdStart1M is a gateway's cold start on 1,000,000 streams over 100 origins in a
// real redis-server: time from the Watcher's start to the first correct resolve and to the
// full snapshot (ready), the CPU time that took (the figure that holds on a shared machine),
// then the live heap and the process's RSS. The fill is not timed.
// Not part of make test (go test -run '^$' -bench ColdStart1M -benchtime 1x ./shared/registry/).
func BenchmarkColdStart1M(b *testing.B) {
	benchColdStart(b, 100, 1_000_000)
}

// BenchmarkColdStart100k is the same at a tenth of the size, as the baseline for the ratio.
func BenchmarkColdStart100k(b *testing.B) {
	benchColdStart(b, 100, 100_000)
}

func benchColdStart(b *testing.B, origins, streams int) {
	srv := redistest.Standalone(b)
	t0 := time.Now()
	fillCold(b, srv.URL(), origins, streams, time.Hour)
	b.Logf("filled %d streams over %d origins in %s", streams, origins, time.Since(t0).Round(time.Millisecond))
	var first, full, cpu, heap, rss float64
	n := 0
	for b.Loop() {
		run, _ := coldStart(b, srv.URL(), origins, streams)
		first += run.first.Seconds()
		full += run.full.Seconds()
		cpu += run.cpu.Seconds()
		heap, rss = run.heapMiB, run.rssMiB
		n++
	}
	b.ReportMetric(first/float64(n), "first-s")
	b.ReportMetric(full/float64(n), "full-s")
	b.ReportMetric(cpu/float64(n), "cpu-s")
	b.ReportMetric(heap, "heap-MiB")
	b.ReportMetric(rss, "rss-MiB")
}
