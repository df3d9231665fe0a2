package resolve

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/peergate/peergate/shared/cluster"
)

// ids lists a tree level's origin ids.
func ids(ns []TreeNode) []string {
	out := []string{}
	for _, n := range ns {
		out = append(out, n.OriginID)
	}
	return out
}

// TestTree: owners at the top, each relay under the origin it pulls from, relays of relays
// under those; a relay whose upstream runs nothing is detached (with its own relays under
// it); on-demand listings apart; each node carries state, load and fill.
func TestTree(t *testing.T) {
	t.Parallel()
	const cam = "live/cam1"
	tb := spillTable(0.8,
		view(org("own", load(4, 0, 0.2), capacity(4, 0)), running(cam)),
		view(org("r1", load(5, 0, 0), capacity(6, 0), draining), relayOf("own", cam)),
		view(org("r2", util(0.3)), relayOf("r1", cam)),
		view(org("r3", util(0.1)), relayOf("r2", cam)),
		view(org("r4", util(0.1)), relayOf("own", cam)),
		view(org("orphan", util(0)), relayOf("dead", cam)),
		view(org("child", util(0)), relayOf("orphan", cam)),
		view(org("loopa", util(0)), relayOf("loopb", cam)),
		view(org("loopb", util(0)), relayOf("loopa", cam)),
		view(org("od", util(0)), ondemand(cam)),
		view(org("other", util(0)), running("live/other")),
	)
	tr, ok := tb.Tree(cam)
	if !ok {
		t.Fatal("Tree: not found")
	}
	if got := ids(tr.Owners); !slices.Equal(got, []string{"own"}) {
		t.Fatalf("owners %v", got)
	}
	own := tr.Owners[0]
	if own.Clients != 4 || own.MaxClients != 4 || !own.Full || own.Fill != 1 || own.OriginState != cluster.StateUp || own.Depth != 0 {
		t.Errorf("owner node %+v", own)
	}
	if got := ids(own.Relays); !slices.Equal(got, []string{"r1", "r4"}) {
		t.Fatalf("relays of own %v, want [r1 r4]", got)
	}
	r1 := own.Relays[0]
	if r1.Upstream != "own" || r1.Depth != 1 || r1.OriginState != cluster.StateDraining || r1.Clients != 5 || r1.Full {
		t.Errorf("r1 node %+v", r1)
	}
	if got := ids(r1.Relays); !slices.Equal(got, []string{"r2"}) {
		t.Fatalf("relays of r1 %v", got)
	}
	if r3 := r1.Relays[0].Relays; len(r3) != 1 || r3[0].OriginID != "r3" || r3[0].Depth != 3 || r3[0].Upstream != "r2" {
		t.Errorf("relays of r2 %+v, want r3 at depth 3", r3)
	}
	if tr.Depth != 3 || tr.Relays != 8 {
		t.Errorf("depth %d relays %d, want 3 and 8", tr.Depth, tr.Relays)
	}
	if got := ids(tr.Detached); !slices.Equal(got, []string{"orphan", "loopa"}) {
		t.Fatalf("detached %v, want [orphan loopa]", got)
	}
	if c := tr.Detached[0].Relays; len(c) != 1 || c[0].OriginID != "child" || c[0].Depth != 2 {
		t.Errorf("relays of the detached orphan %+v", c)
	}
	if c := tr.Detached[1].Relays; len(c) != 1 || c[0].OriginID != "loopb" {
		t.Errorf("a loop is shown once: %+v", tr.Detached[1])
	}
	if got := ids(tr.OnDemand); !slices.Equal(got, []string{"od"}) {
		t.Errorf("ondemand %v", got)
	}
	if _, ok := tb.Tree("live/none"); ok {
		t.Error("Tree of an unlisted name: found")
	}
	// JSON lists are [] rather than null, so consoles can iterate.
	b, _ := json.Marshal(tr)
	if strings.Contains(string(b), "null") {
		t.Errorf("JSON has null: %s", b)
	}
}

// TestTreeHeals: a relay re-resolving to another upstream moves in the tree; a dead relay
// leaving the registry leaves the tree, and its relays hang detached until they move too.
func TestTreeHeals(t *testing.T) {
	t.Parallel()
	const cam = "live/cam1"
	tb := spillTable(0.8,
		view(org("own", util(0.9)), running(cam)),
		view(org("r1", util(0.5)), relayOf("own", cam)),
		view(org("r2", util(0.5)), relayOf("r1", cam)),
	)
	tb.DropOrigin("r1") // its heartbeat TTL ran out
	tr, _ := tb.Tree(cam)
	if got := ids(tr.Owners[0].Relays); len(got) != 0 {
		t.Errorf("relays of own after r1 died: %v", got)
	}
	if got := ids(tr.Detached); !slices.Equal(got, []string{"r2"}) {
		t.Errorf("detached %v, want [r2] (its upstream r1 is gone)", got)
	}
	ex := tb.Explain(Request{Name: cam, Proto: ProtoHTTP, Client: "c"})
	for _, c := range ex.Candidates {
		if c.OriginID == "r2" && !slices.Equal(c.Chain, []string{"r2", "r1", "(not running)"}) {
			t.Errorf("explain chain of r2 %v", c.Chain)
		}
	}
	tb.ApplyStreams("r2", []cluster.StreamChange{{Stream: relayOf("own", cam)[0]}}) // r2 re-resolved
	tr, _ = tb.Tree(cam)
	if got := ids(tr.Owners[0].Relays); !slices.Equal(got, []string{"r2"}) || len(tr.Detached) != 0 {
		t.Errorf("after r2 moved to own: relays of own %v, detached %v", got, ids(tr.Detached))
	}
	si := tb.Streams()
	if len(si) != 1 || len(si[0].Origins) != 2 || si[0].Origins[1].Upstream != "own" {
		t.Errorf("Streams %+v, want r2 listed with upstream own", si)
	}
	// The upstream goes with the relay listing: when r2 stops relaying, or runs the name as
	// an owner, nothing of it is left behind.
	r2 := tb.byID["r2"]
	tb.ApplyStreams("r2", []cluster.StreamChange{{Stream: cluster.Stream{Name: cam}, Removed: true}})
	if r2.ups != nil {
		t.Errorf("upstreams kept after the relay stopped: %v", r2.ups)
	}
	tb.ApplyStreams("r2", []cluster.StreamChange{{Stream: relayOf("own", cam)[0]}})
	tb.ApplyStreams("r2", []cluster.StreamChange{{Stream: running(cam)[0]}})
	if r2.ups != nil || tb.Streams()[0].Origins[1].Upstream != "" {
		t.Errorf("an owner keeps its old upstream: %v", r2.ups)
	}
}

// TestRoute: every OK result names the route taken, and whether the owners were past spill_at.
func TestRoute(t *testing.T) {
	t.Parallel()
	const cam = "live/cam1"
	tests := []struct {
		desc    string
		spillAt float64
		views   []cluster.OriginView
		want    string // origin id
		route   string // RouteLog
	}{
		{"owner under spill_at", 0.8, []cluster.OriginView{view(org("own", util(0.5)), running(cam)), view(org("o2", util(0)))}, "own", "owner"},
		{"existing relay", 0.8, []cluster.OriginView{view(org("own", util(0.9)), running(cam)), view(org("r1", util(0.1)), relayOf("own", cam))}, "r1", "relay/spilled"},
		{"new relay", 0.8, []cluster.OriginView{view(org("own", util(0.9)), running(cam)), view(org("o2", util(0.1)))}, "o2", "new_relay/spilled"},
		{"owner past spill_at, nowhere to spill", 0.8, []cluster.OriginView{view(org("own", util(0.9)), running(cam)), view(org("o2", util(0.95)))}, "own", "owner/spilled"},
		{"no owner eligible: a relay over spill_at", 0.8, []cluster.OriginView{view(org("own", util(1)), running(cam)), view(org("r1", util(0.9)), relayOf("own", cam))}, "r1", "relay/spilled"},
		{"spill off: relay when the owner is full", 0, []cluster.OriginView{view(org("own", util(1)), running(cam)), view(org("r1", util(0.5)), relayOf("own", cam))}, "r1", "relay"},
		{"on demand", 0.8, []cluster.OriginView{view(org("od", util(0)), ondemand(cam))}, "od", "ondemand"},
	}
	for _, tt := range tests {
		tb := spillTable(tt.spillAt, tt.views...)
		res := tb.Resolve(Request{Name: cam, Proto: ProtoHTTP, Client: "viewer"})
		if res.Outcome != OK || res.OriginID != tt.want || res.RouteLog() != tt.route {
			t.Errorf("%s: got %s %s route %q, want %s route %q", tt.desc, res.Outcome, res.OriginID, res.RouteLog(), tt.want, tt.route)
		}
		if ex := tb.Explain(Request{Name: cam, Proto: ProtoHTTP, Client: "viewer"}); ex.Result != res {
			t.Errorf("%s: explain result %+v, resolve %+v", tt.desc, ex.Result, res)
		}
	}
	if r := spillTable(0.8).Resolve(Request{Name: cam}); r.RouteLog() != "" {
		t.Errorf("not found: route %q, want none", r.RouteLog())
	}
	if r := (Result{Route: 200}); r.RouteLog() != "invalid" {
		t.Errorf("out of range route logs %q", r.RouteLog())
	}
	b, _ := json.Marshal(spillTable(0.8, view(org("own", util(0.9)), running(cam)), view(org("o2", util(0.1)))).
		Resolve(Request{Name: cam, Proto: ProtoHTTP}))
	if !strings.Contains(string(b), `"route":"new_relay","spilled":true`) {
		t.Errorf("JSON %s", b)
	}
}

// TestExplainRelayOfRelay: explain names the chain a chosen relay of a relay pulls along.
func TestExplainRelayOfRelay(t *testing.T) {
	t.Parallel()
	const cam = "live/cam1"
	tb := spillTable(0.8,
		view(org("own", util(1)), running(cam)),
		view(org("r1", util(1)), relayOf("own", cam)),
		view(org("r2", util(0.2)), relayOf("r1", cam)),
		view(org("r3", util(0.1), draining), relayOf("own", cam)),
	)
	ex := tb.Explain(Request{Name: cam, Proto: ProtoRTSP, Client: "c"})
	if ex.Result.OriginID != "r2" {
		t.Fatalf("chose %s, want r2 (the only relay up and under spill_at): %s", ex.Result.OriginID, ex.Reason)
	}
	if !strings.Contains(ex.Reason, "r2 <- r1 <- own") {
		t.Errorf("reason %q does not show the chain", ex.Reason)
	}
	for _, c := range ex.Candidates {
		switch c.OriginID {
		case "r2":
			if c.Upstream != "r1" || !c.Chosen {
				t.Errorf("r2 candidate %+v", c)
			}
		case "r3":
			if c.Eligible || !strings.Contains(c.Reason, "draining") {
				t.Errorf("draining relay r3 candidate %+v", c)
			}
		}
	}
}
