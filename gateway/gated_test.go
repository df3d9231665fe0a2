package main

import (
	"sync/atomic"
	"testing"

	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/shared/cluster"
)

// TestGatedResolverDuringFirstSnapshot: while the first snapshot loads (origin by origin), a
// name an already loaded origin lists is redirected to it, and every other answer is
// Unavailable (503, try again), never NotFound; once ready, unknown names are NotFound.
func TestGatedResolverDuringFirstSnapshot(t *testing.T) {
	table := resolve.New(resolve.Options{})
	var ready atomic.Bool
	g := gatedResolver{table, ready.Load}
	ask := func(name string) resolve.Result {
		return g.Resolve(resolve.Request{Name: name, Proto: resolve.ProtoHTTP})
	}
	if r := ask("live/a"); r.Outcome != resolve.Unavailable {
		t.Fatalf("empty, not ready: %+v", r)
	}
	table.PutOrigin(cluster.Origin{ID: "o1", State: cluster.StateUp, Public: cluster.Public{"http": "http://o1.example.com:8081"}})
	table.PutStreams("o1", []cluster.Stream{{Name: "live/a", State: cluster.StreamRunning}})
	if r := ask("live/a"); r.Outcome != resolve.OK || r.OriginID != "o1" {
		t.Fatalf("loaded name, not ready: %+v", r)
	}
	if r := ask("live/b"); r.Outcome != resolve.Unavailable {
		t.Fatalf("name not loaded yet: %+v, want Unavailable", r)
	}
	if r := g.Place(resolve.Request{Name: "live/c", Proto: resolve.ProtoRTMP}); r.Outcome != resolve.Unavailable {
		t.Fatalf("placement before the whole snapshot: %+v, want Unavailable", r)
	}
	ready.Store(true)
	if r := ask("live/b"); r.Outcome != resolve.NotFound {
		t.Fatalf("unknown name once ready: %+v, want NotFound", r)
	}
	if r := ask("live/a"); r.Outcome != resolve.OK || r.OriginID != "o1" {
		t.Fatalf("loaded name, ready: %+v", r)
	}
}
