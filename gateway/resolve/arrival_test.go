package resolve

import (
	"fmt"
	"testing"

	"github.com/peergate/peergate/shared/cluster"
)

// TestArrivalsCountUntilHeartbeat: viewers sent between two heartbeats count against the
// origin's declared capacity, so a crowd arriving faster than heartbeats spills to a relay at
// spill_at and never overfills the owner; questions (explain, steering re-answers) do not
// count; the next heartbeat, which reports the viewers itself, starts the count again.
func TestArrivalsCountUntilHeartbeat(t *testing.T) {
	t.Parallel()
	const cam = "live/cam1"
	capacity := func(clients int64) func(*cluster.Origin) {
		return func(o *cluster.Origin) {
			o.Capacity = cluster.Capacity{MaxClients: 10}
			o.Load = cluster.Load{Clients: clients}
		}
	}
	tb := spillTable(0.8, view(org("own", capacity(0)), running(cam)), view(org("o2", capacity(0))))
	req := func(i int, arrival bool) Request {
		return Request{Name: cam, Proto: ProtoRTSP, Client: fmt.Sprintf("10.0.0.%d", i), Arrival: arrival}
	}

	// Questions never move the answer.
	for i := range 50 {
		if got := tb.Resolve(req(i, false)); got.OriginID != "own" {
			t.Fatalf("question %d: got %q, want own", i, got.OriginID)
		}
	}
	// 30 viewers arrive before any heartbeat: 8 reach spill_at 0.8 of the owner's 10, the
	// next 8 go to the new relay up to its spill_at, then the owner takes viewers until full
	// (nothing else is under spill_at, and o2 does not list the name yet), then 503: 18 sent,
	// none past a declared capacity.
	got := map[string]int{}
	for i := range 30 {
		r := tb.Resolve(req(i, true))
		got[r.OriginID]++
	}
	if got["own"] != 10 || got["o2"] != 8 || got[""] != 12 {
		t.Fatalf("30 arrivals went %v, want own 10 (full), o2 8 (spill_at), 12 unavailable", got)
	}
	// The heartbeats report what arrived (say the owner has 8, o2 none yet): counting
	// starts again from them. Explain does not count; Copies counts the copy it lists first.
	tb.PutOrigin(org("own", capacity(8)))
	tb.PutOrigin(org("o2", capacity(0)))
	for i := range 20 {
		if ex := tb.Explain(req(i, false)); ex.Result.OriginID != "o2" {
			t.Fatalf("explain %d after the heartbeats: %q, want o2", i, ex.Result.OriginID)
		}
	}
	got = map[string]int{}
	for i := range 12 {
		c, _ := tb.Copies(req(i, true), nil)
		first := ""
		if len(c) > 0 && !c[0].Full {
			first = c[0].OriginID
		}
		got[first]++
	}
	if got["o2"] != 8 || got["own"] != 2 || got[""] != 2 {
		t.Fatalf("12 arrivals through Copies went %v, want o2 8, own 2, 2 with no copy to take them", got)
	}
}

// BenchmarkResolveArrival: what counting an arrival costs, against the same question
// without it, on 1,000 streams over the bench origins with no client capacity (so the
// counts never fill anything and both sides choose alike), serial and on every core (the
// count is one atomic add on the chosen origin's snapshot: contended when all cores send
// viewers to one origin).
func BenchmarkResolveArrival(b *testing.B) {
	benchSetup(b)
	views := benchViews(bench.names[:1000])
	for i := range views {
		views[i].Origin.Capacity.MaxClients = 0
	}
	tb := New(Options{Hysteresis: DefaultHysteresis, SpillAt: DefaultSpillAt})
	tb.ReplaceAll(views)
	for _, arrival := range []bool{false, true} {
		b.Run(fmt.Sprintf("arrival=%v", arrival), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				tb.Resolve(Request{Name: bench.names[i%1000], Client: bench.clients[i%benchClients], Arrival: arrival})
			}
		})
		b.Run(fmt.Sprintf("arrival=%v/parallel", arrival), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					tb.Resolve(Request{Name: bench.names[i%1000], Client: bench.clients[i%benchClients], Arrival: arrival})
				}
			})
		})
	}
}
