package resolve

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"unsafe"

	"github.com/peergate/peergate/shared/cluster"
)

// listing renders the table as name -> "id:state" pairs through the admin view.
func listing(tb *Table) map[string][]string {
	out := map[string][]string{}
	for _, s := range tb.Streams() {
		for _, o := range s.Origins {
			out[s.Name] = append(out[s.Name], o.ID+":"+o.State)
		}
	}
	return out
}

func checkListing(t *testing.T, tb *Table, want map[string][]string) {
	t.Helper()
	got := listing(tb)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("streams:\n got %v\nwant %v", got, want)
	}
	entries := 0
	for _, l := range want {
		entries += len(l)
	}
	if _, s, e := tb.Size(); s != len(want) || e != entries {
		t.Fatalf("Size streams=%d entries=%d, want %d %d", s, e, len(want), entries)
	}
}

func checkSize(t *testing.T, tb *Table, origins, streams, entries int) {
	t.Helper()
	if o, s, e := tb.Size(); o != origins || s != streams || e != entries {
		t.Fatalf("Size() = %d, %d, %d; want %d, %d, %d", o, s, e, origins, streams, entries)
	}
}

func TestReplaceAll(t *testing.T) {
	t.Parallel()
	tb := table(
		view(org("o1"), running("a", "b"), ondemand("c")),
		view(org("o2"), running("b")),
	)
	checkSize(t, tb, 2, 3, 4)
	checkListing(t, tb, map[string][]string{
		"a": {"o1:running"}, "b": {"o1:running", "o2:running"}, "c": {"o1:ondemand"},
	})

	// o2 gone, o3 new, o1's list changed (a removed, c now running, d added).
	tb.ReplaceAll([]cluster.OriginView{
		view(org("o1"), running("b", "c", "d")),
		view(org("o3", draining), ondemand("b")),
	})
	checkSize(t, tb, 2, 3, 4)
	checkListing(t, tb, map[string][]string{
		"b": {"o1:running", "o3:ondemand"}, "c": {"o1:running"}, "d": {"o1:running"},
	})
	if got := tb.Resolve(Request{Name: "a"}); got.Outcome != NotFound {
		t.Errorf("a: %v", got)
	}
	if got := tb.Resolve(Request{Name: "b"}); got.OriginID != "o1" {
		t.Errorf("b: %+v", got)
	}
	var ids []string
	for _, o := range tb.Origins() {
		ids = append(ids, o.Origin.ID)
	}
	if !reflect.DeepEqual(ids, []string{"o1", "o3"}) {
		t.Errorf("origins %v", ids)
	}

	tb.ReplaceAll(nil)
	checkSize(t, tb, 0, 0, 0)
	checkInvariants(t, tb)
	if got := tb.Resolve(Request{Name: "b"}); got.Outcome != NotFound {
		t.Errorf("b after emptying: %v", got)
	}
}

func TestPutOriginKeepsStreams(t *testing.T) {
	t.Parallel()
	tb := table(view(org("o1"), running("a", "b")))
	tb.PutOrigin(org("o1", draining))
	if got := tb.Resolve(Request{Name: "a"}); got.Outcome != Unavailable {
		t.Fatalf("draining: %v", got)
	}
	checkSize(t, tb, 1, 2, 2)
	tb.PutOrigin(org("o1", public("http", "http://moved.example.com:9000")))
	got := tb.Resolve(Request{Name: "a"})
	if got.Outcome != OK || got.BaseURL != "http://moved.example.com:9000" {
		t.Fatalf("after refresh: %+v", got)
	}
	checkSize(t, tb, 1, 2, 2)

	// A new origin starts with no streams.
	tb.PutOrigin(org("o2"))
	checkSize(t, tb, 2, 2, 2)
	if info := tb.Origins(); info[0].Streams != 2 || info[1].Streams != 0 {
		t.Errorf("origins %+v", info)
	}
}

func TestPutOriginCopiesRecord(t *testing.T) {
	t.Parallel()
	rec := org("o1")
	tb := table(view(rec, running("a")))
	rec.Public["http"] = "http://evil.example.com"
	if got := tb.Resolve(Request{Name: "a"}); got.BaseURL != "http://o1.example.com:8081" {
		t.Errorf("caller's map leaked into the table: %+v", got)
	}
	info := tb.Origins()
	info[0].Origin.Public["http"] = "http://evil.example.com"
	if got := tb.Resolve(Request{Name: "a"}); got.BaseURL != "http://o1.example.com:8081" {
		t.Errorf("Origins() exposed the table's map: %+v", got)
	}
}

func TestPutStreams(t *testing.T) {
	t.Parallel()
	tb := table(view(org("o1"), running("a", "b")), view(org("o2"), running("b")))
	tb.PutStreams("o1", append(running("b"), ondemand("c")...))
	checkListing(t, tb, map[string][]string{
		"b": {"o1:running", "o2:running"}, "c": {"o1:ondemand"},
	})
	// Unknown states and empty names are ignored; duplicates keep the last state.
	tb.PutStreams("o1", []cluster.Stream{
		{Name: "b", State: "ondemand"}, {Name: "b", State: "running"}, {Name: "x", State: "weird"}, {Name: "", State: "running"},
	})
	checkListing(t, tb, map[string][]string{"b": {"o1:running", "o2:running"}})
	tb.PutStreams("o1", nil)
	checkListing(t, tb, map[string][]string{"b": {"o2:running"}})
	if info := tb.Origins(); info[0].Streams != 0 || info[1].Streams != 1 {
		t.Errorf("origins %+v", info)
	}
}

func TestPutStreamsBeforeRecord(t *testing.T) {
	t.Parallel()
	tb := New(Options{Hysteresis: DefaultHysteresis})
	tb.PutStreams("o9", running("a"))
	if got := tb.Resolve(Request{Name: "a"}); got.Outcome != Unavailable {
		t.Fatalf("without a record: %v", got)
	}
	if ex := tb.Explain(Request{Name: "a"}); ex.Candidates[0].Reason != "origin state is unknown (no record yet)" {
		t.Errorf("reason %q", ex.Candidates[0].Reason)
	}
	tb.PutOrigin(org("o9"))
	if got := tb.Resolve(Request{Name: "a"}); got.OriginID != "o9" {
		t.Fatalf("with its record: %+v", got)
	}
}

func TestApplyStreams(t *testing.T) {
	t.Parallel()
	tb := table(view(org("o1"), running("a", "b")), view(org("o2"), ondemand("b")))
	tb.ApplyStreams("o1", []cluster.StreamChange{
		{Stream: cluster.Stream{Name: "c", State: cluster.StreamRunning}},  // add
		{Stream: cluster.Stream{Name: "a"}, Removed: true},                 // remove
		{Stream: cluster.Stream{Name: "b", State: cluster.StreamOnDemand}}, // state change
		{Stream: cluster.Stream{Name: "zz"}, Removed: true},                // remove unknown: no-op
		{Stream: cluster.Stream{Name: "d", State: "bogus"}},                // unknown state: ignored
	})
	checkListing(t, tb, map[string][]string{
		"b": {"o1:ondemand", "o2:ondemand"}, "c": {"o1:running"},
	})
	tb.ApplyStreams("o2", []cluster.StreamChange{
		{Stream: cluster.Stream{Name: "b", State: cluster.StreamRunning}},
	})
	if got := tb.Resolve(Request{Name: "b"}); got.OriginID != "o2" {
		t.Errorf("b now running on o2 only: %+v", got)
	}
	tb.ApplyStreams("o2", []cluster.StreamChange{{Stream: cluster.Stream{Name: "b"}, Removed: true}})
	checkListing(t, tb, map[string][]string{"b": {"o1:ondemand"}, "c": {"o1:running"}})
	checkInvariants(t, tb)
}

func TestDropOrigin(t *testing.T) {
	t.Parallel()
	tb := table(view(org("o1"), running("a", "b")), view(org("o2"), running("b", "c")))
	tb.DropOrigin("o1")
	checkSize(t, tb, 1, 2, 2)
	checkListing(t, tb, map[string][]string{"b": {"o2:running"}, "c": {"o2:running"}})
	if got := tb.Resolve(Request{Name: "a"}); got.Outcome != NotFound {
		t.Errorf("a: %v", got)
	}
	if got := tb.Resolve(Request{Name: "b", Client: "any"}); got.OriginID != "o2" {
		t.Errorf("b: %+v", got)
	}
	tb.DropOrigin("o1")    // twice: no-op
	tb.DropOrigin("never") // unknown: no-op
	checkSize(t, tb, 1, 2, 2)
	// Coming back starts empty.
	tb.PutOrigin(org("o1"))
	checkSize(t, tb, 2, 2, 2)
}

func TestViewsJSON(t *testing.T) {
	t.Parallel()
	tb := table(view(org("o1", load(3, 1000, 0.25)), running("a")), view(org("o2"), ondemand("a")))
	b, err := json.Marshal(tb.Origins())
	if err != nil {
		t.Fatal(err)
	}
	var origins []struct {
		Origin  cluster.Origin `json:"origin"`
		Streams int            `json:"streams"`
	}
	if err := json.Unmarshal(b, &origins); err != nil {
		t.Fatal(err)
	}
	if len(origins) != 2 || origins[0].Origin.Load.Clients != 3 || origins[0].Streams != 1 {
		t.Errorf("origins JSON %s", b)
	}
	b, err = json.Marshal(tb.Streams())
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"name":"a","origins":[{"id":"o1","state":"running"},{"id":"o2","state":"ondemand"}]}]`; string(b) != want {
		t.Errorf("streams JSON %s\nwant %s", b, want)
	}
}

// checkInvariants checks the writer's bookkeeping: every origin's name list and the refs
// point at each other, names are stored once, and the counters agree.
func checkInvariants(t *testing.T, tb *Table) {
	t.Helper()
	tb.wmu.Lock()
	defer tb.wmu.Unlock()
	entries := 0
	for id, o := range tb.byID {
		if o.id != id || int(o.count.Load()) != len(o.names) {
			t.Fatalf("origin %s: count %d, %d names", id, o.count.Load(), len(o.names))
		}
		for pos, name := range o.names {
			e := tb.shardOf(name).m[name]
			refs := e.refs()
			i := e.indexOf(o)
			if i < 0 || int(refs[i].pos) != pos {
				t.Fatalf("origin %s name %q at %d: refs %+v", id, name, pos, refs)
			}
			for _, r := range refs {
				if unsafe.StringData(r.o.names[r.pos]) != unsafe.StringData(name) {
					t.Fatalf("name %q stored twice", name)
				}
			}
		}
		entries += len(o.names)
	}
	streams := 0
	for i := range tb.shards {
		for name, e := range tb.shards[i].m {
			refs := e.refs()
			streams++
			if len(refs) == 0 || tb.shardOf(name) != &tb.shards[i] {
				t.Fatalf("name %q: refs %v in shard %d", name, refs, i)
			}
			for _, r := range refs {
				if tb.byID[r.o.id] != r.o {
					t.Fatalf("name %q refers to dropped origin %s", name, r.o.id)
				}
			}
		}
	}
	if _, s, e := tb.Size(); s != streams || e != entries {
		t.Fatalf("Size() streams %d entries %d; counted %d, %d", s, e, streams, entries)
	}
}

// TestSinkAgainstModel drives random Sink calls and compares the table with a plain model.
func TestSinkAgainstModel(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	tb := New(Options{Hysteresis: DefaultHysteresis})
	model := map[string]map[string]string{} // origin -> name -> state
	names := make([]string, 150)
	for i := range names {
		names[i] = fmt.Sprint("n", i)
	}
	states := []string{cluster.StreamRunning, cluster.StreamOnDemand}
	randomList := func() []cluster.Stream {
		var l []cluster.Stream
		for range rng.IntN(100) {
			l = append(l, cluster.Stream{Name: names[rng.IntN(len(names))], State: states[rng.IntN(2)]})
		}
		return l
	}
	asMap := func(l []cluster.Stream) map[string]string {
		m := map[string]string{}
		for _, s := range l {
			m[s.Name] = s.State
		}
		return m
	}
	for step := range 3000 {
		id := fmt.Sprint("o", rng.IntN(5))
		switch op := rng.IntN(10); {
		case op < 2:
			tb.PutOrigin(org(id))
			if model[id] == nil {
				model[id] = map[string]string{}
			}
		case op < 5:
			l := randomList()
			tb.PutStreams(id, l)
			model[id] = asMap(l)
		case op < 8:
			var ch []cluster.StreamChange
			if model[id] == nil {
				model[id] = map[string]string{}
			}
			for range rng.IntN(20) {
				c := cluster.StreamChange{Stream: cluster.Stream{Name: names[rng.IntN(len(names))], State: states[rng.IntN(2)]}, Removed: rng.IntN(3) == 0}
				ch = append(ch, c)
				if c.Removed {
					delete(model[id], c.Name)
				} else {
					model[id][c.Name] = c.State
				}
			}
			tb.ApplyStreams(id, ch)
		case op < 9:
			tb.DropOrigin(id)
			delete(model, id)
		default:
			model = map[string]map[string]string{}
			var views []cluster.OriginView
			for j := range rng.IntN(5) {
				vid := fmt.Sprint("o", j)
				l := randomList()
				views = append(views, cluster.OriginView{Origin: org(vid), Streams: l})
				model[vid] = asMap(l)
			}
			tb.ReplaceAll(views)
		}
		want := map[string][]string{}
		for _, oid := range slices.Sorted(maps.Keys(model)) {
			for name, st := range model[oid] {
				want[name] = append(want[name], oid+":"+st)
			}
		}
		if got := listing(tb); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d:\n got %v\nwant %v", step, got, want)
		}
		if o, _, _ := tb.Size(); o != len(model) {
			t.Fatalf("step %d: %d origins, model %d", step, o, len(model))
		}
		checkInvariants(t, tb)
	}
}
