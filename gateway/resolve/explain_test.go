package resolve

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/peergate/peergate/shared/cluster"
)

func TestExplain(t *testing.T) {
	t.Parallel()
	const name = "live/cam1"
	req := Request{Name: name, Client: "203.0.113.9"}
	first, second := topTwo(t, threeUp(name), req)

	tb := New(Options{Hysteresis: DefaultHysteresis})
	tb.PutOrigin(org(first, util(0.10)))
	tb.PutOrigin(org(second, util(0.55)))
	tb.PutOrigin(org("od", util(0)))
	tb.PutOrigin(org("dr", draining))
	tb.PutOrigin(org("fu", capacity(10, 0), load(10, 0, 0)))
	tb.PutOrigin(org("nu", public("rtmp", "rtmp://nu:1936")))
	for _, id := range []string{first, second, "dr", "fu", "nu"} {
		tb.PutStreams(id, running(name))
	}
	tb.PutStreams("od", ondemand(name))

	ex := tb.Explain(req)
	if ex.Result != tb.Resolve(req) || ex.Result.OriginID != first {
		t.Fatalf("result %+v, Resolve %+v", ex.Result, tb.Resolve(req))
	}
	wantReason := fmt.Sprintf("running on 2 eligible origins; top two %s (0.10), %s (0.55); took %s", first, second, first)
	if ex.Reason != wantReason {
		t.Errorf("reason %q\nwant   %q", ex.Reason, wantReason)
	}
	type row struct {
		id, stream   string
		eligible     bool
		reason       string
		rank         int
		chosen       bool
		scheme       string
		utilization  float64
		originState  string
		scoreIsValid bool
	}
	want := []row{
		{first, "running", true, "", 1, true, "http", 0.10, "up", true},
		{second, "running", true, "", 2, false, "http", 0.55, "up", true},
		{"od", "ondemand", true, "", 1, false, "http", 0, "up", true},
		{"dr", "running", false, "origin state is draining", 0, false, "", 0, "draining", true},
		{"fu", "running", false, "at capacity: clients 10/10, egress 0/0 bit/s", 0, false, "", 1, "up", true},
		{"nu", "running", false, "no public URL for http", 0, false, "", 0, "up", true},
	}
	if len(ex.Candidates) != len(want) {
		t.Fatalf("candidates %+v", ex.Candidates)
	}
	for i, w := range want {
		c := ex.Candidates[i]
		got := row{c.OriginID, c.StreamState, c.Eligible, c.Reason, c.Rank, c.Chosen, c.Scheme, c.Utilization, c.OriginState, c.Score != 0}
		if got != w {
			t.Errorf("candidate %d: %+v\nwant %+v", i, got, w)
		}
	}
	if ex.Candidates[0].Score <= ex.Candidates[1].Score {
		t.Errorf("rank 1 score %d not above rank 2 score %d", ex.Candidates[0].Score, ex.Candidates[1].Score)
	}

	b, err := json.Marshal(ex)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"proto":"http"`, `"outcome":"ok"`, `"score":"`, `"hysteresis":0.1`, `"reason":"running on 2`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("JSON lacks %s: %s", s, b)
		}
	}

	// Second much less loaded: taken, and the reason says why.
	tb.PutOrigin(org(second, util(0.2)))
	tb.PutOrigin(org(first, util(0.5)))
	if ex := tb.Explain(req); ex.Result.OriginID != second || !strings.HasSuffix(ex.Reason, "took "+second+" (utilization lower by more than 0.10)") {
		t.Errorf("%+v: %s", ex.Result, ex.Reason)
	}
	// Running ones gone: ondemand.
	tb.DropOrigin(first)
	tb.DropOrigin(second)
	if ex := tb.Explain(req); ex.Result.OriginID != "od" || ex.Reason != "not running on any eligible origin; on demand on 1 eligible origin; took od (rendezvous on name)" {
		t.Errorf("%+v: %s", ex.Result, ex.Reason)
	}
	tb.DropOrigin("od")
	if ex := tb.Explain(req); ex.Result.Outcome != Unavailable || ex.Reason != "listed on 3 origins, none eligible" {
		t.Errorf("%+v: %s", ex.Result, ex.Reason)
	}
	if ex := tb.Explain(Request{Name: "nope"}); ex.Result.Outcome != NotFound || ex.Reason != `no origin lists "nope"` || ex.Candidates == nil || len(ex.Candidates) != 0 {
		t.Errorf("%+v", ex)
	}
}

// TestExplainAgreesWithResolve compares the two over random clusters.
func TestExplainAgreesWithResolve(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	states := []string{cluster.StateUp, cluster.StateUp, cluster.StateUp, cluster.StateDraining}
	for round := range 200 {
		tb := New(Options{Hysteresis: []float64{0, 0.05, -1, 0.3}[round%4]})
		for i := range 1 + rng.IntN(6) {
			id := fmt.Sprint("o", i)
			tb.PutOrigin(org(id, util(rng.Float64()), func(o *cluster.Origin) {
				o.State = states[rng.IntN(len(states))]
				if rng.IntN(4) == 0 {
					o.Public["https"] = "https://" + id + ":8443"
				}
			}))
			if rng.IntN(2) == 0 {
				tb.PutStreams(id, running("s"))
			} else {
				tb.PutStreams(id, ondemand("s"))
			}
		}
		for c := range 20 {
			req := Request{Name: "s", Proto: Proto(rng.IntN(3)), Secure: rng.IntN(2) == 0, Client: fmt.Sprint("c", c)}
			ex := tb.Explain(req)
			if got := tb.Resolve(req); got != ex.Result {
				t.Fatalf("round %d %+v: Resolve %+v, Explain %+v (%s)", round, req, got, ex.Result, ex.Reason)
			}
			chosen := 0
			for _, c := range ex.Candidates {
				if c.Chosen {
					chosen++
					if c.OriginID != ex.Result.OriginID || c.Scheme != ex.Result.Scheme {
						t.Fatalf("chosen candidate %+v vs result %+v", c, ex.Result)
					}
				}
			}
			if (ex.Result.Outcome == OK) != (chosen == 1) {
				t.Fatalf("%d chosen for %+v", chosen, ex.Result)
			}
		}
	}
}
