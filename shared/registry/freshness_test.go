package registry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/redis/go-redis/v9"
)

// TestFreshnessRule: a record is trusted from its issue time until issue time + TTL + the
// allowed skew; older ones, ones issued further ahead than the skew and ones without an
// issue time are stale.
func TestFreshnessRule(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_800_000_000_000)
	const ttl = 3 * time.Second
	cases := []struct {
		desc   string
		skew   time.Duration
		issued time.Time
		ok     bool
	}{
		{"just issued", 0, now, true},
		{"at TTL", 0, now.Add(-ttl), true},
		{"past TTL, no skew", 0, now.Add(-ttl - time.Millisecond), false},
		{"past TTL, within skew", time.Second, now.Add(-ttl - 999*time.Millisecond), true},
		{"past TTL plus skew", time.Second, now.Add(-ttl - time.Second - time.Millisecond), false},
		{"an hour old", time.Second, now.Add(-time.Hour), false},
		{"ahead within skew", time.Second, now.Add(time.Second), true},
		{"ahead past skew", time.Second, now.Add(time.Second + time.Millisecond), false},
		{"ahead, no skew", 0, now.Add(time.Millisecond), false},
		{"negative skew counts as zero", -time.Second, now.Add(-ttl - time.Millisecond), false},
		{"no issue time", time.Hour, time.UnixMilli(0), false},
	}
	for _, c := range cases {
		w := NewWatcher(nil, "k", nil, WatcherOptions{MaxClockSkew: c.skew})
		rec := testOrigin("o1")
		rec.TTLMillis, rec.IssuedMillis = ttl.Milliseconds(), c.issued.UnixMilli()
		deadline, err := w.fresh(rec, now)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok %v", c.desc, err, c.ok)
			continue
		}
		if err != nil && !errors.Is(err, errStale) {
			t.Errorf("%s: error %v does not wrap errStale", c.desc, err)
		}
		// The deadline comes from the issue time, never from when the record was read.
		if want := c.issued.Add(ttl + max(c.skew, 0)); c.ok && !deadline.Equal(want) {
			t.Errorf("%s: deadline %s, want %s", c.desc, deadline, want)
		}
	}
}

func TestNewEpochGrows(t *testing.T) {
	t.Parallel()
	prev := NewEpoch()
	for range 1000 {
		e := NewEpoch()
		if e <= prev {
			t.Fatalf("epoch %d after %d", e, prev)
		}
		prev = e
	}
	if d := time.Since(time.Unix(0, int64(prev))); d < -time.Second || d > time.Minute {
		t.Fatalf("epoch %d is not the boot time (off by %s)", prev, d)
	}
}

// plantRecord writes a record signed with the cluster key and lists it in the index.
func plantRecord(t *testing.T, c redis.UniversalClient, key string, rec cluster.Origin, px time.Duration) {
	t.Helper()
	ctx := context.Background()
	ks, sg := keyspace{Namespace(key)}, newSigner(key)
	blob, err := sg.seal(kindRecord, rec.ID, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, ks.rec(rec.ID), blob, px).Err(); err != nil {
		t.Fatal(err)
	}
	c.ZAdd(ctx, ks.origins(), redis.Z{Score: float64(time.Now().Add(px).UnixMilli()), Member: rec.ID})
}

// TestReplayAfterDeath: a live origin's record and heartbeat are captured from Redis; the
// origin dies (stops writing, no bye) and the watcher drops it. The captured record written
// back with a long PX and the captured heartbeat published again and again never bring it
// back, through several snapshots; each replay is counted as stale.
func TestReplayAfterDeath(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	const key = "replay-key"
	ctx := context.Background()
	c := dial(t, srv.URL())
	ks := keyspace{Namespace(key)}

	sub := c.Subscribe(ctx, ks.events())
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	reg := newRegistrar(t, c, key, testOrigin("o1"))
	reg.SetStreams(manyStreams("live", 3))
	sink := newTestSink()
	w := NewWatcher(c, key, sink, WatcherOptions{AntiEntropy: 200 * time.Millisecond, MaxClockSkew: 100 * time.Millisecond, Logger: testLogger(t)})
	run := newRunner(t)
	run.start(w.Run)
	stop := run.start(reg.Run)
	sink.waitFor(t, "o1", waitMax, func() bool { _, ok, n := sink.view("o1"); return ok && n == 3 })

	var beat string
	deadline := time.After(waitMax)
	for beat == "" {
		select {
		case m := <-sub.Channel():
			if ev, err := newSigner(key).openEvent([]byte(m.Payload)); err == nil && ev.Kind == eventBeat {
				beat = m.Payload
			}
		case <-deadline:
			t.Fatal("no heartbeat captured")
		}
	}
	rec, err := c.Get(ctx, ks.rec("o1")).Result()
	if err != nil {
		t.Fatal(err)
	}
	stop() // dies without a bye
	sink.waitFor(t, "o1 dropped", waitMax, func() bool { _, ok, _ := sink.view("o1"); return !ok })

	before := w.Stats()
	stopReplay := make(chan struct{})
	replayed := make(chan int, 1)
	go func() {
		n := 0
		defer func() { replayed <- n }()
		for {
			c.Set(ctx, ks.rec("o1"), rec, time.Minute)
			c.ZAdd(ctx, ks.origins(), redis.Z{Score: float64(time.Now().Add(time.Minute).UnixMilli()), Member: "o1"})
			c.Publish(ctx, ks.events(), beat)
			n++
			select {
			case <-stopReplay:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	// Several snapshots and many replayed beats later, o1 is still gone.
	sink.waitFor(t, "replays seen", waitMax, func() bool {
		st := w.Stats()
		if _, ok, _ := sink.view("o1"); ok {
			t.Fatal("replayed record brought the dead origin back")
		}
		return st.Resyncs >= before.Resyncs+5 && st.StaleRecords >= before.StaleRecords+20
	})
	close(stopReplay)
	var n int
	select {
	case n = <-replayed:
	case <-time.After(waitMax):
		t.Fatal("replayer did not stop")
	}
	if _, ok, _ := sink.view("o1"); ok {
		t.Fatal("replayed record brought the dead origin back")
	}
	st := w.Stats()
	t.Logf("%d replays, %d stale values dropped, %d snapshots", n, st.StaleRecords-before.StaleRecords, st.Resyncs-before.Resyncs)
	if st.GapResyncs != before.GapResyncs {
		t.Errorf("replayed beats caused %d re-reads; a stale beat must cost no Redis read", st.GapResyncs-before.GapResyncs)
	}
}

// TestExpiryFromIssueTime: a record read long after it was issued lives only until its issue
// time + TTL (+ skew), however long its key's PX: nothing renews it, so the watcher drops it
// about one second after the snapshot, where a deadline counted from the read would keep
// it ten.
func TestExpiryFromIssueTime(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	const key = "issued-key"
	c := dial(t, srv.URL())
	const ttl = 10 * time.Second
	rec := testOrigin("o1")
	rec.State, rec.Epoch, rec.TTLMillis = cluster.StateUp, NewEpoch(), ttl.Milliseconds()
	rec.IssuedMillis = time.Now().Add(-ttl + time.Second).UnixMilli()
	plantRecord(t, c, key, rec, time.Hour)

	sink := newTestSink()
	w := NewWatcher(c, key, sink, WatcherOptions{AntiEntropy: time.Minute, Logger: testLogger(t)})
	newRunner(t).start(w.Run)
	sink.waitFor(t, "snapshot", waitMax, func() bool { _, ok, _ := sink.view("o1"); return ok })
	read := time.Now()
	sink.waitFor(t, "o1 expired", waitMax, func() bool { _, ok, _ := sink.view("o1"); return !ok })
	if held := time.Since(read); held > ttl-2*time.Second {
		t.Fatalf("held %s after the read; the record was issued %s before it", held, ttl-time.Second)
	}
	if st := w.Stats(); st.Expired != 1 {
		t.Fatalf("stats %+v, want 1 expired", st)
	}
}

// TestOlderEpochIgnored: with o1 held at epoch E2, a heartbeat and a record of an older epoch
// E1, both freshly issued and validly signed, are ignored (counted stale); a newer epoch
// still replaces the held one.
func TestOlderEpochIgnored(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	const key = "epoch-order-key"
	ctx := context.Background()
	c := dial(t, srv.URL())
	ks, sg := keyspace{Namespace(key)}, newSigner(key)
	const ttl = time.Minute
	e1 := NewEpoch()
	e2 := NewEpoch()
	rec := func(epoch uint64, host string) cluster.Origin {
		o := testOrigin("o1")
		o.Public = cluster.Public{"http": "http://" + host + ":8081"}
		o.State, o.Epoch, o.TTLMillis, o.IssuedMillis = cluster.StateUp, epoch, ttl.Milliseconds(), time.Now().UnixMilli()
		return o
	}
	plantRecord(t, c, key, rec(e2, "new.example"), ttl)
	sink := newTestSink()
	w := NewWatcher(c, key, sink, WatcherOptions{AntiEntropy: 200 * time.Millisecond, Logger: testLogger(t)})
	newRunner(t).start(w.Run)
	public := func() string { o, _, _ := sink.view("o1"); return o.Public["http"] }
	sink.waitFor(t, "o1 at E2", waitMax, func() bool { return public() == "http://new.example:8081" })

	old, _ := sg.sealEvent(eventBeat, "o1", beatBody{Seq: 1 << 40, Rec: rec(e1, "old.example")})
	c.Publish(ctx, ks.events(), old)
	sink.waitFor(t, "old beat counted", waitMax, func() bool { return w.Stats().StaleRecords >= 1 })
	// The older run's record in Redis: snapshots ignore it and keep E2.
	plantRecord(t, c, key, rec(e1, "old.example"), ttl)
	resyncs := w.Stats().Resyncs
	sink.waitFor(t, "snapshots", waitMax, func() bool { return w.Stats().Resyncs >= resyncs+3 })
	if got := public(); got != "http://new.example:8081" {
		t.Fatalf("older epoch replaced the held record: %s", got)
	}
	if st := w.Stats(); st.StaleRecords < 4 {
		t.Fatalf("stale %d, want the beat and every snapshot's record counted", st.StaleRecords)
	}
	// A newer run is taken at once.
	e3 := NewEpoch()
	plantRecord(t, c, key, rec(e3, "newer.example"), ttl)
	hb, _ := sg.sealEvent(eventBeat, "o1", beatBody{Seq: 1, Rec: rec(e3, "newer.example")})
	c.Publish(ctx, ks.events(), hb)
	sink.waitFor(t, "o1 at E3", waitMax, func() bool { return public() == "http://newer.example:8081" })
}

// TestPublishClaims: one NAME, one origin. o2 is refused a NAME o1 claimed, while o1's
// stream runs well past the claim's TTL (renewed on every heartbeat); once o1's stream stops
// the claim is released and o2 takes it; a deregistering origin releases its claims; an
// origin re-claiming its own NAME is accepted.
func TestPublishClaims(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	const key = "claim-key"
	ctx := context.Background()
	c := dial(t, srv.URL())
	const ttl = time.Second // ten heartbeats: a loaded machine must not let a running claim lapse
	o1 := newRegistrarTTL(t, c, key, testOrigin("o1"), ttl)
	o2 := newRegistrarTTL(t, c, key, testOrigin("o2"), ttl)
	run := newRunner(t)
	run.start(o1.Run)
	run.start(o2.Run)

	if err := o1.ClaimPublish(ctx, "live/x"); err != nil {
		t.Fatal(err)
	}
	o1.PutStream(cluster.Stream{Name: "live/x", State: cluster.StreamRunning})
	if err := o1.ClaimPublish(ctx, "live/x"); err != nil {
		t.Fatalf("o1 re-claiming its own NAME: %v", err)
	}
	err := o2.ClaimPublish(ctx, "live/x")
	if !errors.Is(err, ErrClaimed) {
		t.Fatalf("o2 claimed o1's NAME: %v", err)
	}
	t.Logf("refusal: %v", err)
	// Several TTLs later the claim still holds: renewed while the stream runs.
	time.Sleep(3 * ttl)
	if err := o2.ClaimPublish(ctx, "live/x"); !errors.Is(err, ErrClaimed) {
		t.Fatalf("after %s (claim TTL %s) o2 claimed o1's running NAME: %v", 3*ttl, ttl, err)
	}
	o1.RemoveStream("live/x")
	sink := newTestSink()
	sink.waitFor(t, "claim released", waitMax, func() bool { return o2.ClaimPublish(ctx, "live/x") == nil })
	if err := o1.ClaimPublish(ctx, "live/x"); !errors.Is(err, ErrClaimed) {
		t.Fatalf("o1 took o2's claim back: %v", err)
	}
	o2.PutStream(cluster.Stream{Name: "live/x", State: cluster.StreamRunning})
	if err := o2.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if err := o1.ClaimPublish(ctx, "live/x"); err != nil {
		t.Fatalf("claim of a deregistered origin not released: %v", err)
	}
}

// TestPublishClaimFailOpen: with Redis unreachable a claim is not checked and the publisher
// is accepted (within the claim timeout), so a registry outage never stops ingest.
func TestPublishClaimFailOpen(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	proxy := redistest.NewProxy(t, srv.Addr())
	c := dial(t, proxy.URL())
	o1 := newRegistrar(t, c, "k", testOrigin("o1"))
	o2 := newRegistrarTTL(t, dial(t, srv.URL()), "k", testOrigin("o2"), time.Minute) // not run: its claim must outlive the test
	ctx := context.Background()
	if err := o2.ClaimPublish(ctx, "live/x"); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	start := time.Now()
	if err := o1.ClaimPublish(ctx, "live/x"); err != nil {
		t.Fatalf("claim with Redis away: %v, want accepted", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("claim with Redis away took %s", d)
	}
	proxy.Restore()
	if err := o1.ClaimPublish(ctx, "live/x"); !errors.Is(err, ErrClaimed) {
		t.Fatalf("with Redis back, o1 claimed o2's NAME: %v", err)
	}
}
