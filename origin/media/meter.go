package media

import (
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/peergate/peergate/shared/cluster"
)

// Protocol names used for viewer accounting.
const (
	ProtoRTSP   = "rtsp"
	ProtoRTMP   = "rtmp"
	ProtoHLS    = "hls"
	ProtoMPEGTS = "mpegts"
)

type meter struct {
	clients atomic.Int64
	bytes   atomic.Int64
}

type meters struct {
	mu sync.Mutex
	m  map[string]*meter
}

func (ms *meters) get(proto string) *meter {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		ms.m = map[string]*meter{}
	}
	m := ms.m[proto]
	if m == nil {
		m = &meter{}
		ms.m[proto] = m
	}
	return m
}

// Viewer is one client watching a stream over one protocol.
type Viewer struct {
	s    *Stream
	m    *meter
	left atomic.Bool
}

// Join counts a viewer of s over proto until Leave.
func (s *Stream) Join(proto string) *Viewer {
	m := s.t.meters.get(proto)
	m.clients.Add(1)
	s.viewers.Add(1)
	return &Viewer{s: s, m: m}
}

// TryJoin is Join refused with ErrTooManyViewers when the stream already has
// Config.MaxViewers viewers (all protocols together).
func (s *Stream) TryJoin(proto string) (*Viewer, error) {
	for {
		n := s.viewers.Load()
		if n >= int64(s.t.cfg.MaxViewers) {
			return nil, ErrTooManyViewers
		}
		if s.viewers.CompareAndSwap(n, n+1) {
			break
		}
	}
	m := s.t.meters.get(proto)
	m.clients.Add(1)
	return &Viewer{s: s, m: m}, nil
}

// Sent adds n egress bytes to the viewer's protocol.
func (v *Viewer) Sent(n int) { v.m.bytes.Add(int64(n)) }

// Leave ends the viewer; later calls do nothing.
func (v *Viewer) Leave() {
	if v.left.Swap(true) {
		return
	}
	v.m.clients.Add(-1)
	v.s.viewers.Add(-1)
}

// AddEgress counts egress bytes of proto that belong to no single Viewer.
func (t *Table) AddEgress(proto string, n int64) { t.meters.get(proto).bytes.Add(n) }

// ProtoStats are the counters of one protocol.
type ProtoStats struct {
	Protocol    string
	Clients     int64
	EgressBytes int64 // since start
}

// Stats is a snapshot of the table's counters.
type Stats struct {
	Streams     int
	Clients     int64
	EgressBytes int64
	Protocols   []ProtoStats // sorted by protocol
}

// Stats snapshots streams, clients and egress bytes per protocol.
func (t *Table) Stats() Stats {
	var st Stats
	st.Streams = len(t.Names())
	t.meters.mu.Lock()
	for p, m := range t.meters.m {
		ps := ProtoStats{Protocol: p, Clients: m.clients.Load(), EgressBytes: m.bytes.Load()}
		st.Clients += ps.Clients
		st.EgressBytes += ps.EgressBytes
		st.Protocols = append(st.Protocols, ps)
	}
	t.meters.mu.Unlock()
	sort.Slice(st.Protocols, func(i, j int) bool { return st.Protocols[i].Protocol < st.Protocols[j].Protocol })
	return st
}

// LoadMeter turns successive Stats into cluster.Load; not safe for concurrent Sample calls.
type LoadMeter struct {
	t       *Table
	last    time.Time
	lastOut int64
	lastCPU time.Duration
}

// NewLoadMeter starts measuring from now.
func (t *Table) NewLoadMeter() *LoadMeter {
	return &LoadMeter{t: t, last: time.Now(), lastOut: t.Stats().EgressBytes, lastCPU: processCPU()}
}

// Sample returns clients now, egress bit/s and CPU share of the machine since the last Sample.
func (m *LoadMeter) Sample() cluster.Load {
	now := time.Now()
	st := m.t.Stats()
	cpu := processCPU()
	el := now.Sub(m.last)
	var l cluster.Load
	l.Clients = st.Clients
	if el > 0 {
		l.EgressBps = int64(float64(st.EgressBytes-m.lastOut) * 8 / el.Seconds())
		l.CPU = (cpu - m.lastCPU).Seconds() / (el.Seconds() * float64(runtime.NumCPU()))
		l.CPU = min(max(l.CPU, 0), 1)
	}
	m.last, m.lastOut, m.lastCPU = now, st.EgressBytes, cpu
	return l
}

// processCPU is user+system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
