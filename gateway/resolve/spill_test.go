package resolve

import (
	"fmt"
	"strings"
	"testing"

	"github.com/peergate/peergate/shared/cluster"
)

func relayOf(upstream string, names ...string) []cluster.Stream {
	out := running(names...)
	for i := range out {
		out[i].Upstream = upstream
	}
	return out
}

func cpu(c float64) func(*cluster.Origin) {
	return func(o *cluster.Origin) { o.Load = cluster.Load{CPU: c} }
}

func spillTable(spillAt float64, views ...cluster.OriginView) *Table {
	t := New(Options{Hysteresis: DefaultHysteresis, SpillAt: spillAt})
	t.ReplaceAll(views)
	return t
}

// TestSpill: the placement rule of cluster pull-through. Viewers go to the stream's owner
// while it is under spill_at; past it to a relay under spill_at, else to a new relay chosen
// by rendezvous on the name among origins under spill_at; never to a draining or full origin.
func TestSpill(t *testing.T) {
	t.Parallel()
	const cam = "live/cam1"
	tests := []struct {
		desc    string
		spillAt float64
		views   []cluster.OriginView
		want    string // origin id, or "" for Unavailable
		oneOf   []string
	}{
		{desc: "owner under spill_at keeps its viewers", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", util(0.5)), running(cam)), view(org("r1", util(0.1)), relayOf("own", cam)), view(org("o2", util(0)))},
			want:  "own"},
		{desc: "owner over spill_at: an existing relay under it", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", util(0.85)), running(cam)), view(org("r1", util(0.5)), relayOf("own", cam)), view(org("o2", util(0)))},
			want:  "r1"},
		{desc: "owner full: an existing relay under spill_at", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", util(1)), running(cam)), view(org("r1", util(0.79)), relayOf("own", cam)), view(org("o2", util(0)))},
			want:  "r1"},
		{desc: "owner and relays over spill_at: a new relay under it, by rendezvous on the name", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", util(0.9)), running(cam)), view(org("r1", util(0.8)), relayOf("own", cam)),
				view(org("o2", util(0.3))), view(org("o3", util(0.1))), view(org("o4", util(0.95))), view(org("o5", draining))},
			oneOf: []string{"o2", "o3"}},
		{desc: "an origin listing the name ondemand is not a new relay", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", util(0.9)), running(cam)), view(org("od", util(0)), ondemand(cam))},
			want:  "own"},
		{desc: "nothing under spill_at: the owner while not full", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", util(0.9)), running(cam)), view(org("o2", util(0.85)))},
			want:  "own"},
		{desc: "nothing under spill_at, owner full: a relay over spill_at that is not full", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", util(1)), running(cam)), view(org("r1", util(0.9)), relayOf("own", cam)), view(org("o2", util(1)))},
			want:  "r1"},
		{desc: "everything full", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", util(1)), running(cam)), view(org("r1", util(1)), relayOf("own", cam)), view(org("o2", util(1)))},
			want:  ""},
		{desc: "spill off: the owner until full", spillAt: 0,
			views: []cluster.OriginView{view(org("own", util(0.99)), running(cam)), view(org("r1", util(0)), relayOf("own", cam))},
			want:  "own"},
		{desc: "spill off, owner full: an existing relay rather than 503", spillAt: 0,
			views: []cluster.OriginView{view(org("own", util(1)), running(cam)), view(org("r1", util(0.5)), relayOf("own", cam)), view(org("o2", util(0)))},
			want:  "r1"},
		{desc: "a busy CPU is no reason to spill: fill counts declared capacity only", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", cpu(0.97)), running(cam)), view(org("o2", util(0)))},
			want:  "own"},
		{desc: "not running anywhere: no spill, ondemand as before", spillAt: 0.8,
			views: []cluster.OriginView{view(org("od", util(0.9)), ondemand(cam)), view(org("o2", util(0)))},
			want:  "od"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			tb := spillTable(tc.spillAt, tc.views...)
			var first string
			for i := range 50 {
				got := tb.Resolve(Request{Name: cam, Proto: ProtoRTSP, Client: fmt.Sprintf("10.0.0.%d", i)})
				if tc.want == "" && tc.oneOf == nil {
					if got.Outcome != Unavailable {
						t.Fatalf("got %+v, want unavailable", got)
					}
					continue
				}
				if got.Outcome != OK {
					t.Fatalf("got %+v", got)
				}
				if tc.want != "" && got.OriginID != tc.want {
					t.Fatalf("client %d: got %s, want %s", i, got.OriginID, tc.want)
				}
				if tc.oneOf != nil {
					if got.OriginID != tc.oneOf[0] && got.OriginID != tc.oneOf[1] {
						t.Fatalf("client %d: got %s, want one of %v", i, got.OriginID, tc.oneOf)
					}
					// Concentration: every viewer of the name spills to the same origin.
					if first == "" {
						first = got.OriginID
					} else if got.OriginID != first {
						t.Fatalf("client %d went to %s, client 0 to %s: spill must not scatter a stream", i, got.OriginID, first)
					}
				}
			}
			// Explain decides alike and says why.
			ex := tb.Explain(Request{Name: cam, Proto: ProtoRTSP, Client: "10.0.0.0"})
			want := tb.Resolve(Request{Name: cam, Proto: ProtoRTSP, Client: "10.0.0.0"})
			if ex.Result != want {
				t.Fatalf("explain %+v, resolve %+v", ex.Result, want)
			}
		})
	}
}

// TestSpillAgreesAcrossTables: two gateways with the same view spill a stream to the same new relay.
func TestSpillAgreesAcrossTables(t *testing.T) {
	t.Parallel()
	const cam = "live/cam1"
	views := []cluster.OriginView{view(org("own", util(0.9)), running(cam))}
	for i := range 8 {
		views = append(views, view(org(fmt.Sprintf("o%d", i), util(0.1))))
	}
	a := spillTable(0.8, views...).Resolve(Request{Name: cam, Proto: ProtoHTTP, Client: "a"})
	b := spillTable(0.8, views...).Resolve(Request{Name: cam, Proto: ProtoHTTP, Client: "b"})
	if a.Outcome != OK || a.OriginID == "own" || a != b {
		t.Fatalf("gateways disagree or no spill: %+v vs %+v", a, b)
	}
	// Another name spreads elsewhere at least sometimes: rendezvous is per name.
	spread := map[string]bool{}
	for i := range 40 {
		name := fmt.Sprintf("live/s%d", i)
		vs := []cluster.OriginView{view(org("own", util(0.9)), running(name))}
		vs = append(vs, views[1:]...)
		spread[spillTable(0.8, vs...).Resolve(Request{Name: name, Proto: ProtoHTTP}).OriginID] = true
	}
	if len(spread) < 3 {
		t.Fatalf("40 names spilled to only %d origins: %v", len(spread), spread)
	}
}

// TestExplainSpill: explain shows the relays, the new relay and why the viewer spilled.
func TestExplainSpill(t *testing.T) {
	t.Parallel()
	const cam = "live/cam1"
	tb := spillTable(0.8, view(org("own", util(0.9)), running(cam)), view(org("r1", util(0.85)), relayOf("own", cam)), view(org("o2", util(0.1))))
	ex := tb.Explain(Request{Name: cam, Proto: ProtoRTSP, Client: "x"})
	if ex.Result.OriginID != "o2" || ex.SpillAt != 0.8 {
		t.Fatalf("explain: %+v", ex)
	}
	var relay, fresh bool
	for _, c := range ex.Candidates {
		switch c.OriginID {
		case "r1":
			relay = c.Relay && !c.Chosen
		case "o2":
			fresh = c.NewRelay && c.Chosen
		}
	}
	if !relay || !fresh {
		t.Errorf("candidates do not show the relay and the new relay: %+v", ex.Candidates)
	}
	if !strings.Contains(ex.Reason, "spilled to new relay o2") {
		t.Errorf("reason %q does not say where the viewer spilled", ex.Reason)
	}
	ex = spillTable(0.8, view(org("own", util(0.9)), running(cam)), view(org("r1", util(0.5)), relayOf("own", cam))).
		Explain(Request{Name: cam, Proto: ProtoRTSP, Client: "x"})
	if ex.Result.OriginID != "r1" || !strings.Contains(ex.Reason, "spilled to relay r1") {
		t.Errorf("explain: %s: %+v", ex.Reason, ex.Result)
	}
}

// TestPlaceSkipsRelays: a publisher never goes to an origin that relays the name.
func TestPlaceSkipsRelays(t *testing.T) {
	t.Parallel()
	const cam = "live/cam1"
	tb := spillTable(0.8, view(org("r1", util(0)), relayOf("gone", cam)), view(org("o2", util(0.5))))
	if got := tb.Place(Request{Name: cam, Proto: ProtoRTSP}); got.OriginID != "o2" {
		t.Fatalf("Place = %+v, want o2 (r1 only relays the name)", got)
	}
	tb = spillTable(0.8, view(org("own", util(0.9)), running(cam)), view(org("r1", util(0)), relayOf("own", cam)))
	if got := tb.Place(Request{Name: cam, Proto: ProtoRTSP}); got.OriginID != "own" {
		t.Fatalf("Place = %+v, want the owner", got)
	}
	// The admin view marks the relay.
	for _, si := range tb.Streams() {
		for _, o := range si.Origins {
			if (o.ID == "r1") != o.Relay {
				t.Errorf("Streams: %+v", o)
			}
		}
	}
}

// TestSpillDoesNotAllocate: the spill path keeps Resolve allocation-free.
func TestSpillDoesNotAllocate(t *testing.T) {
	const cam = "live/cam1"
	views := []cluster.OriginView{view(org("own", util(0.9)), running(cam)), view(org("r1", util(0.85)), relayOf("own", cam))}
	for i := range 16 {
		views = append(views, view(org(fmt.Sprintf("o%d", i), util(0.1))))
	}
	tb := spillTable(0.8, views...)
	req := Request{Name: cam, Proto: ProtoHTTP, Client: "10.0.0.1"}
	if got := tb.Resolve(req); got.Outcome != OK || got.OriginID == "own" || got.OriginID == "r1" {
		t.Fatalf("Resolve = %+v, want a new relay", got)
	}
	if n := testing.AllocsPerRun(100, func() { tb.Resolve(req) }); n != 0 {
		t.Fatalf("Resolve with spill allocates %v times", n)
	}
}

// BenchmarkResolveSpill measures Resolve for a viewer that spills to a new relay (a scan of
// every origin) against the owner path, on the same table of 100 origins: run both and
// compare ns/op (the owner path is the baseline).
func BenchmarkResolveSpill(b *testing.B) {
	const cam = "live/cam1"
	views := []cluster.OriginView{view(org("own", util(0.5)), running(cam))}
	for i := range 99 {
		views = append(views, view(org(fmt.Sprintf("o%02d", i), util(0.1))))
	}
	under := spillTable(0.8, views...)
	views[0] = view(org("own", util(0.9)), running(cam))
	over := spillTable(0.8, views...)
	req := Request{Name: cam, Proto: ProtoHTTP, Client: "10.0.0.1"}
	b.Run("owner", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			under.Resolve(req)
		}
	})
	b.Run("spill", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			over.Resolve(req)
		}
	})
}
