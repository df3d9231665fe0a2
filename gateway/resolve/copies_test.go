package resolve

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/peergate/peergate/shared/cluster"
)

// copyIDs lists the origin ids of copies, draining and full ones marked with a suffix.
func copyIDs(cs []Copy) string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.OriginID
		switch {
		case c.Draining:
			out[i] += "(draining)"
		case c.Full:
			out[i] += "(full)"
		}
	}
	return strings.Join(out, " ")
}

func gone(t *Table, id string) *Table { t.DropOrigin(id); return t }

// TestCopies: the copies of a name an HLS viewer can be steered between, in order: Resolve's
// answer, the other eligible copies, full ones, draining ones; never an origin down or gone.
func TestCopies(t *testing.T) {
	t.Parallel()
	const cam = "live/cam1"
	tests := []struct {
		desc    string
		spillAt float64
		views   []cluster.OriginView
		drop    string // an origin dropped after the table is built
		want    string // ids in order; "" for none
		oc      Outcome
		first   []string // when the owner order depends on the client: the allowed first ids
	}{
		{desc: "owner only", views: []cluster.OriginView{view(org("own"), running(cam))},
			want: "own", oc: OK},
		{desc: "owner under spill_at first, its relay second", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", util(0.5)), running(cam)), view(org("r1", util(0.1)), relayOf("own", cam)), view(org("o2"))},
			want:  "own r1", oc: OK},
		{desc: "owner past spill_at: the relay first, the owner still listed", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", util(0.85)), running(cam)), view(org("r1", util(0.5)), relayOf("own", cam))},
			want:  "r1 own", oc: OK},
		{desc: "owner past spill_at, no relay: the spill target first", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", util(0.9)), running(cam)), view(org("o2", util(0.1)))},
			want:  "o2 own", oc: OK},
		{desc: "draining owner last, never first", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", draining), running(cam)), view(org("r1", util(0.5)), relayOf("own", cam))},
			want:  "r1 own(draining)", oc: OK},
		{desc: "draining relay after the full owner", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", util(1)), running(cam)), view(org("r1", draining), relayOf("own", cam)),
				view(org("r2", util(0.2)), relayOf("own", cam))},
			want: "r2 own(full) r1(draining)", oc: OK},
		{desc: "only draining: unavailable, still listed for the viewers there", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", draining), running(cam))},
			want:  "own(draining)", oc: Unavailable},
		{desc: "a dropped origin is not listed", spillAt: 0.8,
			views: []cluster.OriginView{view(org("own", util(0.5)), running(cam)), view(org("r1", util(0.1)), relayOf("own", cam))},
			drop:  "own", want: "r1", oc: OK},
		{desc: "an origin without a record is not listed",
			views: []cluster.OriginView{view(cluster.Origin{ID: "norec"}, running(cam)), view(org("own"), running(cam))},
			want:  "own", oc: OK},
		{desc: "an origin without an http URL is not listed",
			views: []cluster.OriginView{view(org("rt", public("rtsp", "rtsp://rt:8555")), running(cam)), view(org("own"), running(cam))},
			want:  "own", oc: OK},
		{desc: "two owners: the viewer's choice first, both listed",
			views: []cluster.OriginView{view(org("a"), running(cam)), view(org("b"), running(cam))},
			first: []string{"a", "b"}, oc: OK},
		{desc: "on demand only after the running copies",
			views: []cluster.OriginView{view(org("od"), ondemand(cam)), view(org("own"), running(cam))},
			want:  "own od", oc: OK},
		{desc: "not running anywhere: the on-demand origin",
			views: []cluster.OriginView{view(org("od"), ondemand(cam)), view(org("od2", draining), ondemand(cam))},
			want:  "od", oc: OK},
		{desc: "unknown name", views: []cluster.OriginView{view(org("own"), running("other"))},
			want: "", oc: NotFound},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			tb := spillTable(tc.spillAt, tc.views...)
			if tc.drop != "" {
				gone(tb, tc.drop)
			}
			var buf []Copy
			for i := range 20 {
				req := Request{Name: cam, Proto: ProtoHTTP, Client: fmt.Sprintf("10.0.0.%d", i)}
				got, oc := tb.Copies(req, buf)
				buf = got
				if oc != tc.oc {
					t.Fatalf("outcome %v, want %v (%s)", oc, tc.oc, copyIDs(got))
				}
				if tc.first != nil {
					if len(got) != len(tc.first) || !slices.Contains(tc.first, got[0].OriginID) {
						t.Fatalf("got %s, want all of %v", copyIDs(got), tc.first)
					}
				} else if s := copyIDs(got); s != tc.want {
					t.Fatalf("client %d: got %q, want %q", i, s, tc.want)
				}
				// Consistent with Resolve: the first copy is its answer.
				res := tb.Resolve(req)
				if res.Outcome != oc {
					t.Fatalf("Resolve outcome %v, Copies %v", res.Outcome, oc)
				}
				if oc == OK && (got[0].OriginID != res.OriginID || got[0].BaseURL != res.BaseURL || got[0].Scheme != res.Scheme) {
					t.Fatalf("first copy %+v, Resolve %+v", got[0], res)
				}
				for _, c := range got {
					if c.BaseURL != "http://"+c.OriginID+".example.com:8081" || c.Scheme != "http" {
						t.Fatalf("copy %+v has a URL not of its origin", c)
					}
				}
			}
		})
	}
}

// TestCopiesSecureAndMeta: https is preferred when asked, and the stream's announced
// description comes with each copy.
func TestCopiesSecureAndMeta(t *testing.T) {
	t.Parallel()
	const cam = "live/cam1"
	meta := cluster.StreamMeta{Codecs: "avc1.64001f,mp4a.40.2", Width: 1280, Height: 720, BitrateBps: 2_000_000}
	owner := running(cam)
	owner[0].Meta = meta
	tb := spillTable(0.8,
		view(org("own", public("http", "http://own:8081", "https", "https://own:8443")), owner),
		view(org("r1", util(0.1)), relayOf("own", cam)))
	got, oc := tb.Copies(Request{Name: cam, Proto: ProtoHTTP, Secure: true, Client: "x"}, nil)
	if oc != OK || len(got) != 2 {
		t.Fatalf("got %v %+v", oc, got)
	}
	if got[0].BaseURL != "https://own:8443" || got[0].Scheme != "https" || got[0].Meta != meta {
		t.Errorf("owner copy %+v", got[0])
	}
	if got[1].BaseURL != "http://r1.example.com:8081" || !got[1].Relay || got[1].Meta != (cluster.StreamMeta{}) {
		t.Errorf("relay copy %+v", got[1])
	}
	// A meta change reaches the copies.
	meta.BitrateBps = 3_000_000
	owner[0].Meta = meta
	tb.PutStreams("own", owner)
	if got, _ := tb.Copies(Request{Name: cam, Proto: ProtoHTTP, Client: "x"}, nil); got[0].Meta.BitrateBps != 3_000_000 {
		t.Errorf("meta not updated: %+v", got[0])
	}
	// Withdrawn, then running again without a description: none is left over.
	tb.ApplyStreams("own", []cluster.StreamChange{{Stream: cluster.Stream{Name: cam}, Removed: true}})
	tb.ApplyStreams("own", []cluster.StreamChange{{Stream: cluster.Stream{Name: cam, State: cluster.StreamRunning}}})
	if got, _ := tb.Copies(Request{Name: cam, Proto: ProtoHTTP, Client: "x"}, nil); got[0].OriginID != "own" || got[0].Meta != (cluster.StreamMeta{}) {
		t.Errorf("meta of a withdrawn stream kept: %+v", got[0])
	}
	// A description changes with the stream's state: ondemand carries none.
	tb.PutStreams("own", owner)
	tb.PutStreams("own", ondemand(cam))
	tb.PutStreams("own", running(cam))
	if got, _ := tb.Copies(Request{Name: cam, Proto: ProtoHTTP, Client: "x"}, nil); got[0].Meta != (cluster.StreamMeta{}) {
		t.Errorf("meta kept across ondemand: %+v", got[0])
	}
}

// TestCopiesDoesNotAllocate: with a buffer of room, listing copies costs no allocation.
func TestCopiesDoesNotAllocate(t *testing.T) {
	const cam = "live/cam1"
	views := []cluster.OriginView{view(org("own", util(0.9)), running(cam)), view(org("r1", util(0.5)), relayOf("own", cam)),
		view(org("r2", draining), relayOf("own", cam))}
	for i := range 8 {
		views = append(views, view(org(fmt.Sprintf("o%d", i), util(0.1))))
	}
	tb := spillTable(0.8, views...)
	req := Request{Name: cam, Proto: ProtoHTTP, Client: "10.0.0.1"}
	buf := make([]Copy, 0, 8)
	if got, oc := tb.Copies(req, buf); oc != OK || copyIDs(got) != "r1 own r2(draining)" {
		t.Fatalf("Copies = %v %s", oc, copyIDs(got))
	}
	if n := testing.AllocsPerRun(100, func() { tb.Copies(req, buf) }); n != 0 {
		t.Fatalf("Copies allocates %v times", n)
	}
}

// BenchmarkCopies measures Copies against Resolve on the same table (Resolve is the baseline).
func BenchmarkCopies(b *testing.B) {
	const cam = "live/cam1"
	views := []cluster.OriginView{view(org("own", util(0.5)), running(cam)), view(org("r1", util(0.5)), relayOf("own", cam))}
	for i := range 98 {
		views = append(views, view(org(fmt.Sprintf("o%02d", i), util(0.1))))
	}
	tb := spillTable(0.8, views...)
	req := Request{Name: cam, Proto: ProtoHTTP, Client: "10.0.0.1"}
	b.Run("resolve", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tb.Resolve(req)
		}
	})
	b.Run("copies", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]Copy, 0, 8)
		for b.Loop() {
			buf, _ = tb.Copies(req, buf)
		}
	})
}

// TestCopiesCrowded: copies filled to spill_at are marked, so steering can move players off them.
func TestCopiesCrowded(t *testing.T) {
	t.Parallel()
	const cam = "live/cam1"
	tb := spillTable(0.8, view(org("own", util(0.85)), running(cam)), view(org("r1", util(0.5)), relayOf("own", cam)))
	got, _ := tb.Copies(Request{Name: cam, Proto: ProtoHTTP, Client: "x"}, nil)
	if copyIDs(got) != "r1 own" || got[0].Crowded || !got[1].Crowded {
		t.Fatalf("copies %+v", got)
	}
	// Spilling off: nothing is crowded.
	tb = spillTable(0, view(org("own", util(0.85)), running(cam)))
	if got, _ := tb.Copies(Request{Name: cam, Proto: ProtoHTTP, Client: "x"}, nil); got[0].Crowded {
		t.Fatalf("copies %+v", got)
	}
}
