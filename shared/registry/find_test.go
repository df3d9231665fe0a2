package registry

import (
	"context"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/shared/cluster"
)

// TestFindStream: the origins running NAME come back with their records, owners and relays
// alike (the relay with its upstream); ondemand listings, other names, forged entries and
// deregistered origins do not.
func TestFindStream(t *testing.T) {
	c := dial(t, redistest.Standalone(t).URL())
	const key = "find-key-0123456789abcdef"
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	put := func(id string, streams ...cluster.Stream) *Registrar {
		r := newRegistrarTTL(t, c, key, testOrigin(id), 10*time.Second)
		r.SetStreams(streams)
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		return r
	}
	put("o1", cluster.Stream{Name: "live/a", State: cluster.StreamRunning}, cluster.Stream{Name: "live/b", State: cluster.StreamRunning})
	put("o2", cluster.Stream{Name: "live/a", State: cluster.StreamRunning, Upstream: "o1"})
	put("o3", cluster.Stream{Name: "live/a", State: cluster.StreamOnDemand})
	gone := put("o4", cluster.Stream{Name: "live/a", State: cluster.StreamRunning})
	put("o5", cluster.Stream{Name: "live/c", State: cluster.StreamRunning})
	if err := gone.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	// A forged entry under o5's key: not signed with the cluster key.
	if err := c.HSet(ctx, keyspace{Namespace(key)}.streams("o5"), "live/a",
		`{"body":{"name":"live/a","state":"running"},"sig":"AAAA"}`).Err(); err != nil {
		t.Fatal(err)
	}
	// An origin of another cluster key lists it too: a different namespace, never seen.
	other, err := NewRegistrar(c, "other-key-0123456789abcdef", testOrigin("o6"), RegistrarOptions{Heartbeat: testHB, TTL: 10 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	other.SetStreams([]cluster.Stream{{Name: "live/a", State: cluster.StreamRunning}})
	if err := other.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	f := NewFinder(c, key, FinderOptions{MaxClockSkew: time.Second, Logger: testLogger(t)})
	got, err := f.FindStream(ctx, "live/a")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Origin.ID != "o1" || got[1].Origin.ID != "o2" {
		t.Fatalf("FindStream(live/a) = %+v, want o1 and o2", got)
	}
	if got[0].Stream.Relay() || !got[1].Stream.Relay() || got[1].Stream.Upstream != "o1" {
		t.Errorf("relay marks: %+v / %+v", got[0].Stream, got[1].Stream)
	}
	if got[0].Origin.Public["rtsp"] != "rtsp://o1.example.com:8555" || got[0].Origin.Capacity.MaxClients != 100 {
		t.Errorf("record of o1 not carried: %+v", got[0].Origin)
	}
	if got, err := f.FindStream(ctx, "live/none"); err != nil || len(got) != 0 {
		t.Errorf("FindStream(live/none) = %+v, %v; want nothing", got, err)
	}
	// A record past its signed TTL (a replay, or the last words of a dead origin) is not trusted.
	late := NewFinder(c, key, FinderOptions{Now: func() time.Time { return time.Now().Add(time.Minute) }, Logger: testLogger(t)})
	if got, err := late.FindStream(ctx, "live/b"); err != nil || len(got) != 0 {
		t.Errorf("FindStream past the TTL = %+v, %v; want nothing", got, err)
	}
}

// TestFindStreamRedisDown: an unreadable registry is an error, not "nobody runs it".
func TestFindStreamRedisDown(t *testing.T) {
	srv := redistest.Standalone(t)
	c := dial(t, srv.URL())
	f := NewFinder(c, "find-key-0123456789abcdef", FinderOptions{Logger: testLogger(t)})
	_ = c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	if _, err := f.FindStream(ctx, "live/a"); err == nil {
		t.Fatal("FindStream with a closed client: no error")
	}
}
