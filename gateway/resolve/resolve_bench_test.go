package resolve

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/peergate/peergate/shared/cluster"
)

// The benchmark cluster: 1,000,000 streams over 100 origins, each stream on one or two.
const (
	benchStreams = 1_000_000
	benchOrigins = 100
	benchClients = 4096
)

func benchNames() []string {
	names := make([]string, benchStreams)
	for i := range names {
		names[i] = fmt.Sprintf("live/stream%07d", i)
	}
	return names
}

// benchViews puts stream i on origin i%100, and every other stream also on a second origin;
// one in ten listings is ondemand.
func benchViews(names []string) []cluster.OriginView {
	views := make([]cluster.OriginView, benchOrigins)
	for j := range views {
		id := fmt.Sprintf("origin-%03d", j)
		views[j].Origin = cluster.Origin{
			ID:    id,
			State: cluster.StateUp,
			Public: cluster.Public{
				"http":  "http://" + id + ".example.com:8081",
				"https": "https://" + id + ".example.com:8443",
				"rtsp":  "rtsp://" + id + ".example.com:8555",
				"rtmp":  "rtmp://" + id + ".example.com:1936",
			},
			Load:     cluster.Load{Clients: int64(j * 37 % 900), EgressBps: int64(j) * 1e7, CPU: float64(j%10) / 10},
			Capacity: cluster.Capacity{MaxClients: 1000, MaxBandwidthBps: 10e9},
		}
	}
	for i, name := range names {
		state := cluster.StreamRunning
		if i%10 == 9 {
			state = cluster.StreamOnDemand
		}
		a := i % benchOrigins
		views[a].Streams = append(views[a].Streams, cluster.Stream{Name: name, State: state})
		if i%2 == 0 {
			b := (a + 1 + i/benchOrigins%(benchOrigins-1)) % benchOrigins
			views[b].Streams = append(views[b].Streams, cluster.Stream{Name: name, State: cluster.StreamRunning})
		}
	}
	return views
}

var bench struct {
	once    sync.Once
	names   []string
	clients []string
	table   *Table
	baseMap map[string]int
}

func benchSetup(b *testing.B) {
	b.Helper()
	bench.once.Do(func() {
		bench.names = benchNames()
		bench.clients = make([]string, benchClients)
		for i := range bench.clients {
			bench.clients[i] = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		}
		bench.table = New(Options{Hysteresis: DefaultHysteresis})
		bench.table.ReplaceAll(benchViews(bench.names))
		// Own copies of the keys, as any index has: lookups then miss on the key bytes as the table's do.
		bench.baseMap = make(map[string]int, len(bench.names))
		for i, n := range bench.names {
			bench.baseMap[strings.Clone(n)] = i
		}
	})
	b.ResetTimer()
}

// benchIndex walks the names in a scattered order so lookups do not ride the cache.
func benchIndex(i int) int { return int(uint64(i) * 2654435761 % benchStreams) }

// threadCPU returns the CPU time of the calling OS thread: on a shared machine wall time per op
// mostly measures the neighbours, so the benchmarks also report cpu-ns/op.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPerOp runs loop with the goroutine pinned to its thread and reports CPU ns per op.
func cpuPerOp(b *testing.B, loop func() int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU()
	n := loop()
	if n > 0 {
		b.ReportMetric(float64(threadCPU()-start)/float64(n), "cpu-ns/op")
	}
}

func BenchmarkResolve(b *testing.B) {
	benchSetup(b)
	b.ReportAllocs()
	ok := 0
	cpuPerOp(b, func() int {
		i := 0
		for ; b.Loop(); i++ {
			r := bench.table.Resolve(Request{Name: bench.names[benchIndex(i)], Client: bench.clients[i%benchClients]})
			if r.Outcome == OK {
				ok++
			}
		}
		return i
	})
	if ok == 0 {
		b.Fatal("nothing resolved")
	}
}

// BenchmarkResolveSmall is the same choice on 1,000 streams, which stay in cache: the cost of
// the choice itself, without the memory misses of a large index.
func BenchmarkResolveSmall(b *testing.B) {
	benchSetup(b)
	tb := New(Options{Hysteresis: DefaultHysteresis})
	views := benchViews(bench.names[:1000])
	tb.ReplaceAll(views)
	b.ResetTimer()
	b.ReportAllocs()
	cpuPerOp(b, func() int {
		i := 0
		for ; b.Loop(); i++ {
			tb.Resolve(Request{Name: bench.names[i%1000], Client: bench.clients[i%benchClients]})
		}
		return i
	})
}

func BenchmarkResolveParallel(b *testing.B) {
	benchSetup(b)
	b.ReportAllocs()
	var seed atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(1)) * 7777
		for pb.Next() {
			bench.table.Resolve(Request{Name: bench.names[benchIndex(i)], Client: bench.clients[i%benchClients], Secure: i&1 == 0})
			i++
		}
	})
}

// BenchmarkMapLookupBaseline is the floor: a plain map[string]int lookup on the same names.
func BenchmarkMapLookupBaseline(b *testing.B) {
	benchSetup(b)
	b.ReportAllocs()
	sum := 0
	cpuPerOp(b, func() int {
		i := 0
		for ; b.Loop(); i++ {
			sum += bench.baseMap[bench.names[benchIndex(i)]]
		}
		return i
	})
	if sum == 0 {
		b.Fatal("no lookups")
	}
}

// BenchmarkPutOrigin is one heartbeat: a record refresh, which never touches the stream shards.
func BenchmarkPutOrigin(b *testing.B) {
	benchSetup(b)
	b.ReportAllocs()
	rec := bench.table.Origins()[7].Origin
	for i := 0; b.Loop(); i++ {
		rec.Load.Clients = int64(i % 1000)
		bench.table.PutOrigin(rec)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkTableMemory reports the table's heap per (stream, origin) entry, next to a plain
// map[string]int of the same names per name. Run it with -benchtime=1x.
func BenchmarkTableMemory(b *testing.B) {
	for b.Loop() {
		before := heapInUse()
		tb := New(Options{Hysteresis: DefaultHysteresis})
		tb.ReplaceAll(benchViews(benchNames())) // the table copies the names, so the input is garbage now
		after := heapInUse()
		_, streams, entries := tb.Size()
		b.ReportMetric(float64(after-before)/float64(entries), "B/entry")
		b.ReportMetric(float64(after-before)/float64(streams), "B/stream")
		b.ReportMetric(float64(entries), "entries")
		runtime.KeepAlive(tb)

		before = heapInUse()
		m := make(map[string]int)
		for i, n := range benchNames() {
			m[n] = i
		}
		after = heapInUse()
		b.ReportMetric(float64(after-before)/float64(len(m)), "baseline-B/name")
		runtime.KeepAlive(m)
	}
}

// BenchmarkReplaceAllUnchanged is an anti-entropy pass that finds nothing to change.
func BenchmarkReplaceAllUnchanged(b *testing.B) {
	benchSetup(b)
	b.StopTimer()
	views := benchViews(bench.names)
	b.StartTimer()
	b.ReportAllocs()
	for b.Loop() {
		bench.table.ReplaceAll(views)
	}
}
