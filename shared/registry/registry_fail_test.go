package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/redis/go-redis/v9"
)

func TestRedisKillRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	const key = "restart-key"
	run := newRunner(t)
	sink := newTestSink()
	rc, wc := dial(t, srv.URL()), dial(t, srv.URL())
	reg := newRegistrar(t, rc, key, testOrigin("o1"))
	reg.SetStreams(manyStreams("live", 50))
	run.start(reg.Run)
	w := newWatcher(t, wc, key, sink)
	run.start(w.Run)
	sink.waitFor(t, "50 streams", waitMax, func() bool { _, ok, n := sink.view("o1"); return ok && n == 50 })
	before := w.Stats()

	// From the kill until the change after the restart, the sink must never lose o1's list,
	// even in the window where the watcher reads a restarted, still empty Redis.
	stopWatch, lost := make(chan struct{}), make(chan string, 1)
	go func() {
		for {
			select {
			case <-stopWatch:
				close(lost)
				return
			default:
			}
			if _, ok, n := sink.view("o1"); !ok || n < 50 {
				select {
				case lost <- fmt.Sprintf("held %v, %d streams", ok, n):
				default:
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()

	srv.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for w.Stats().Connected {
		if time.Now().After(deadline) {
			t.Fatal("watcher still reports connected 5 s after Redis died")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Redis away: the last good copy stays, well past the TTL, and is reported degraded.
	sink.waitFor(t, "copy unconfirmed for 3 TTLs", waitMax, func() bool { return w.Health().CopyAge > 3*testTTL })
	if h := w.Health(); !h.Degraded || !strings.Contains(h.Reason, "registry unreachable") {
		t.Fatalf("health while Redis is away: %+v", h)
	}
	if err := w.CheckReady(0); err != nil {
		t.Fatalf("not ready with max_staleness off: %v", err)
	}
	if err := w.CheckReady(testTTL); err == nil {
		t.Fatal("ready past max_staleness while Redis is away")
	}
	if _, ok, n := sink.view("o1"); !ok || n != 50 {
		t.Fatalf("while Redis is away the sink lost o1 (held %v, %d streams)", ok, n)
	}
	if st := w.Stats(); st.Connected || !w.Ready() || st.Expired != before.Expired {
		t.Fatalf("stats while away: %+v", st)
	}

	srv.Restart()
	reg.PutStream(cluster.Stream{Name: "after/restart", State: cluster.StreamRunning})
	sink.waitFor(t, "change made after restart", waitMax, func() bool {
		_, ok := sink.hasStream("o1", "after/restart")
		_, _, n := sink.view("o1")
		return ok && n == 51
	})
	sink.waitFor(t, "reconnect", waitMax, func() bool { return w.Stats().Connected })
	close(stopWatch)
	if msg, ok := <-lost; ok {
		t.Fatalf("the sink lost o1 around the restart: %s", msg)
	}
	st := w.Stats()
	if st.Resyncs <= before.Resyncs || st.Disconnects == 0 || !st.LastSync.After(before.LastSync) {
		t.Fatalf("stats after restart: %+v (before %+v)", st, before)
	}
	// The registrar rewrote its whole list into the empty Redis.
	ks := keyspace{Namespace(key)}
	ctx := context.Background()
	sink.waitFor(t, "list rewritten", waitMax, func() bool { return wc.HLen(ctx, ks.streams("o1")).Val() == 51 })
}

func TestOriginRestartNewEpoch(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	const key = "epoch-key"
	run := newRunner(t)
	sink := newTestSink()
	c := dial(t, srv.URL())
	a := newRegistrar(t, c, key, testOrigin("o1"))
	a.SetStreams(manyStreams("a", 20))
	stopA := run.start(a.Run)
	run.start(newWatcher(t, c, key, sink).Run)
	sink.waitFor(t, "a streams", waitMax, func() bool { _, ok := sink.hasStream("o1", "a/s00019"); return ok })
	stopA()
	// Same id, new process: a new epoch whose list replaces the old one entirely.
	b := newRegistrar(t, c, key, testOrigin("o1"))
	b.SetStreams(manyStreams("b", 5))
	run.start(b.Run)
	sink.waitFor(t, "b replaces a", waitMax, func() bool {
		o, ok, n := sink.view("o1")
		_, hasB := sink.hasStream("o1", "b/s00004")
		return ok && o.Epoch == b.Epoch() && n == 5 && hasB
	})
	if a.Epoch() == b.Epoch() {
		t.Fatal("epochs repeat")
	}
}

func TestForgedDataDropped(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	const key = "right-key"
	ctx := context.Background()
	c := dial(t, srv.URL())
	ks, good, bad := keyspace{Namespace(key)}, newSigner(key), newSigner("wrong-key")
	// A registrar that is flushed but not run, so nothing rewrites the forged entries.
	reg, err := NewRegistrar(c, key, testOrigin("o1"), RegistrarOptions{Heartbeat: time.Second, TTL: time.Minute, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	reg.SetStreams(manyStreams("live", 10))
	if err := reg.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	plant := func(id string, blob []byte) {
		t.Helper()
		if err := c.Set(ctx, ks.rec(id), blob, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		c.ZAdd(ctx, ks.origins(), redis.Z{Score: float64(time.Now().Add(time.Minute).UnixMilli()), Member: id})
	}
	evil := testOrigin("evil")
	evil.State, evil.Epoch, evil.TTLMillis = cluster.StateUp, 1, 60000
	blob, _ := bad.seal(kindRecord, "evil", evil)
	plant("evil", blob) // signed with another key
	o1blob := c.Get(ctx, ks.rec("o1")).Val()
	plant("copy", []byte(o1blob)) // o1's valid record replayed under another id
	tamp := testOrigin("tamp")
	tamp.State, tamp.Epoch, tamp.TTLMillis = cluster.StateUp, 1, 60000
	blob, _ = good.seal(kindRecord, "tamp", tamp)
	plant("tamp", []byte(strings.Replace(string(blob), "tamp.example.com", "attacker.example", 1)))
	invalid := testOrigin("inv")
	invalid.State, invalid.Public = "bogus", cluster.Public{"http": "http://x/path"}
	blob, _ = good.seal(kindRecord, "inv", invalid)
	plant("inv", blob) // signed but fails Validate
	sblob, _ := bad.seal(kindStream, "o1", cluster.Stream{Name: "evil/stream", State: cluster.StreamRunning})
	c.HSet(ctx, ks.streams("o1"), "evil/stream", sblob)

	sink := newTestSink()
	w := newWatcher(t, c, key, sink)
	run := newRunner(t)
	run.start(w.Run)
	sink.waitFor(t, "snapshot", waitMax, w.Ready)
	if _, ok, n := sink.view("o1"); !ok || n != 10 {
		t.Fatalf("o1 held %v with %d streams, want 10", ok, n)
	}
	for _, id := range []string{"evil", "copy", "tamp", "inv"} {
		if _, ok, _ := sink.view(id); ok {
			t.Errorf("forged origin %s reached the sink", id)
		}
	}
	st := w.Stats()
	if st.SignatureFailures != 4 || st.InvalidRecords != 1 {
		t.Fatalf("stats %+v; want 4 signature failures (evil, copy, tamp, stream) and 1 invalid", st)
	}

	// Forged events: a delta with the wrong key, a valid signature over a record for another id,
	// and a bye replayed as another kind. None may change the view.
	d, _ := bad.sealEvent(eventDelta, "o1", deltaBody{Epoch: reg.Epoch(), FromVersion: 1, Version: 2,
		Changes: []cluster.StreamChange{{Stream: cluster.Stream{Name: "evil/x", State: cluster.StreamRunning}}}})
	hb, _ := good.sealEvent(eventBeat, "o1", beatBody{Seq: 99, Rec: evil})
	bye, _ := good.sealEvent(eventBye, "o1", byeBody{Epoch: reg.Epoch()})
	var e event
	_ = json.Unmarshal(bye, &e)
	e.Kind = eventDelta
	swapped, _ := json.Marshal(e)
	for _, m := range [][]byte{d, hb, swapped} {
		c.Publish(ctx, ks.events(), m)
	}
	sink.waitFor(t, "forged events counted", waitMax, func() bool {
		st := w.Stats()
		return st.SignatureFailures == 6 && st.InvalidRecords == 2
	})
	if _, ok := sink.hasStream("o1", "evil/x"); ok {
		t.Fatal("forged delta applied")
	}
	if _, ok, n := sink.view("o1"); !ok || n != 10 {
		t.Fatalf("o1 changed by forged events: held %v, %d streams", ok, n)
	}
}

func TestWrongKeyInvisible(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	const right, wrong = "the-right-cluster-key", "some-other-cluster-key"
	run := newRunner(t)
	sink := newTestSink()
	c := dial(t, srv.URL())
	good := newRegistrar(t, c, right, testOrigin("good"))
	good.SetStreams(manyStreams("g", 2))
	run.start(good.Run)
	other := newRegistrar(t, c, wrong, testOrigin("other"))
	other.SetStreams(manyStreams("o", 2))
	run.start(other.Run)
	w := newWatcher(t, c, right, sink)
	run.start(w.Run)
	sink.waitFor(t, "good origin", waitMax, func() bool { _, ok, n := sink.view("good"); return ok && n == 2 })
	// Synchronise on the other namespace being written and on several more events handled
	// here, rather than on a sleep: by then the other origin would have shown up if it could.
	ctx := context.Background()
	otherRec := keyspace{Namespace(wrong)}.rec("other")
	events := w.Stats().Events
	sink.waitFor(t, "other origin written and more beats seen", waitMax, func() bool {
		return c.Exists(ctx, otherRec).Val() == 1 && w.Stats().Events >= events+5
	})
	if _, ok, _ := sink.view("other"); ok {
		t.Fatal("origin with the wrong key is visible")
	}
	if st := w.Stats(); st.SignatureFailures != 0 || st.Origins != 1 {
		t.Fatalf("stats %+v: the other namespace must be invisible, not even rejected", st)
	}
	// Neither key is written to Redis, in key names, values or channel names.
	keys := c.Keys(ctx, "*").Val()
	if len(keys) == 0 {
		t.Fatal("no keys written")
	}
	for _, k := range keys {
		dump := k
		switch c.Type(ctx, k).Val() {
		case "string":
			dump += c.Get(ctx, k).Val()
		case "hash":
			dump += fmt.Sprint(c.HGetAll(ctx, k).Val())
		case "zset":
			dump += fmt.Sprint(c.ZRange(ctx, k, 0, -1).Val())
		}
		if strings.Contains(dump, right) || strings.Contains(dump, wrong) {
			t.Fatalf("cluster key found in Redis under %s", k)
		}
	}
	for _, ch := range c.PubSubChannels(ctx, "*").Val() {
		if strings.Contains(ch, right) || strings.Contains(ch, wrong) {
			t.Fatalf("cluster key in channel name %s", ch)
		}
	}
}

func TestLargeList(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	const key = "large-key"
	run := newRunner(t)
	c := dial(t, srv.URL())
	reg := newRegistrar(t, c, key, testOrigin("big"))
	reg.SetStreams(manyStreams("live", 10000))
	ctx := context.Background()
	start := time.Now()
	if err := reg.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("registrar wrote 10000 streams in %s", time.Since(start))
	run.start(reg.Run)
	sink := newTestSink()
	start = time.Now()
	run.start(newWatcher(t, c, key, sink).Run)
	took := sink.waitFor(t, "10000 streams", waitMax, func() bool { _, ok, n := sink.view("big"); return ok && n == 10000 })
	t.Logf("watcher loaded 10000 streams in %s (race detector on: slower)", took)
	_ = start

	// A batch larger than one delta goes through chunked writes and a re-read.
	extra := manyStreams("bulk", maxDelta+50)
	for _, s := range extra {
		reg.PutStream(s)
	}
	sink.waitFor(t, "bulk add", waitMax, func() bool { _, _, n := sink.view("big"); return n == 10000+len(extra) })
	reg.SetStreams(manyStreams("live", 10))
	sink.waitFor(t, "shrink to 10", waitMax, func() bool { _, _, n := sink.view("big"); return n == 10 })
}

func TestStopWhileRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	c := dial(t, srv.URL())
	reg := newRegistrar(t, c, "k", testOrigin("o1"))
	reg.PutStream(cluster.Stream{Name: "bad-state", State: "paused"}) // ignored
	reg.PutStream(cluster.Stream{Name: "ok", State: cluster.StreamRunning})
	sink := newTestSink()
	w := newWatcher(t, c, "k", sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan string, 2)
	go func() { _ = reg.Run(ctx); done <- "registrar" }()
	go func() { _ = w.Run(ctx); done <- "watcher" }()
	sink.waitFor(t, "o1", waitMax, func() bool { _, ok, n := sink.view("o1"); return ok && n == 1 })
	srv.Kill()
	sink.waitFor(t, "Redis gone for the watcher and the registrar", waitMax, func() bool {
		return !w.Stats().Connected && reg.CheckReady() != nil
	})
	cancel()
	for range 2 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return 10 s after cancel with Redis down")
		}
	}
	if err := reg.Flush(context.Background()); err == nil {
		t.Fatal("Flush succeeded with Redis down")
	}
	if _, ok := sink.hasStream("o1", "bad-state"); ok {
		t.Fatal("stream with an invalid state registered")
	}
}

func TestVersionGapRereads(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	const key = "gap-key"
	ctx := context.Background()
	c := dial(t, srv.URL())
	reg, err := NewRegistrar(c, key, testOrigin("o1"), RegistrarOptions{Heartbeat: time.Second, TTL: time.Minute, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	reg.SetStreams(manyStreams("live", 5))
	if err := reg.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sink := newTestSink()
	w := newWatcher(t, c, key, sink)
	newRunner(t).start(w.Run)
	sink.waitFor(t, "o1", waitMax, func() bool { _, ok, n := sink.view("o1"); return ok && n == 5 })

	// Change Redis behind the watcher's back (as if the delta was lost), then announce a
	// delta that does not follow the held version: the watcher must re-read the origin.
	ks, sg := keyspace{Namespace(key)}, newSigner(key)
	blob, _ := sg.seal(kindStream, "o1", cluster.Stream{Name: "missed", State: cluster.StreamRunning})
	c.HSet(ctx, ks.streams("o1"), "missed", blob)
	gap, _ := sg.sealEvent(eventDelta, "o1", deltaBody{Epoch: reg.Epoch(), FromVersion: 1000, Version: 1001,
		Changes: []cluster.StreamChange{{Stream: cluster.Stream{Name: "other", State: cluster.StreamRunning}}}})
	c.Publish(ctx, ks.events(), gap)
	sink.waitFor(t, "re-read after gap", waitMax, func() bool { _, ok := sink.hasStream("o1", "missed"); return ok })
	if _, ok := sink.hasStream("o1", "other"); ok {
		t.Fatal("delta after a gap was applied instead of re-reading")
	}
	if st := w.Stats(); st.GapResyncs == 0 {
		t.Fatalf("gap not counted: %+v", st)
	}
	// The normal path still works after the re-read.
	reg.PutStream(cluster.Stream{Name: "next", State: cluster.StreamRunning})
	if err := reg.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "next", waitMax, func() bool { _, ok := sink.hasStream("o1", "next"); return ok })
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	sn := redistest.NewSentinelWith(t, redistest.SentinelConfig{Sentinels: 3, Replica: true})
	const key = "failover-key"
	run := newRunner(t)
	sink := newTestSink()
	reg := newRegistrar(t, dial(t, sn.URL()), key, testOrigin("o1"))
	reg.SetStreams(manyStreams("live", 100))
	run.start(reg.Run)
	w := newWatcher(t, dial(t, sn.URL()), key, sink)
	run.start(w.Run)
	sink.waitFor(t, "100 streams", waitMax, func() bool { _, ok, n := sink.view("o1"); return ok && n == 100 })

	sn.Master.Kill()
	reg.PutStream(cluster.Stream{Name: "after/failover", State: cluster.StreamRunning})
	sink.waitFor(t, "change after failover", 30*time.Second, func() bool {
		_, ok := sink.hasStream("o1", "after/failover")
		_, held, n := sink.view("o1")
		return ok && held && n == 101
	})
	role, err := redistest.Do(sn.Replica.Addr(), "ROLE")
	if err != nil || !strings.HasPrefix(role, "master") {
		t.Fatalf("replica was not promoted: %q %v", role, err)
	}
}

// A failover to a replica that missed the last change, or a restart from an older dump, can
// leave a list of the right length but the wrong content. Its length cannot tell; the record's
// version can. The registrar must rewrite, or the stale list stays (and every watcher's
// re-read brings it back) until some later write happens to fail.
func TestStaleListOfSameLengthRewritten(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	const key = "stale-key"
	ctx := context.Background()
	run := newRunner(t)
	c := dial(t, srv.URL())
	ks, sg := keyspace{Namespace(key)}, newSigner(key)
	reg := newRegistrar(t, c, key, testOrigin("o1"))
	reg.SetStreams([]cluster.Stream{{Name: "a", State: cluster.StreamRunning}, {Name: "b", State: cluster.StreamRunning}})
	run.start(reg.Run)
	sink := newTestSink()
	run.start(newWatcher(t, c, key, sink).Run)
	stateInRedis := func(name string) string {
		var s cluster.Stream
		blob, err := c.HGet(ctx, ks.streams("o1"), name).Bytes()
		if err != nil || sg.open(kindStream, "o1", blob, &s) != nil {
			return ""
		}
		return s.State
	}
	sink.waitFor(t, "a and b", waitMax, func() bool { _, _, n := sink.view("o1"); return n == 2 })
	// What the lagging replica holds: the record and list from before the change.
	recDump, err := c.Dump(ctx, ks.rec("o1")).Result()
	if err != nil {
		t.Fatal(err)
	}
	listDump, err := c.Dump(ctx, ks.streams("o1")).Result()
	if err != nil {
		t.Fatal(err)
	}
	reg.PutStream(cluster.Stream{Name: "b", State: cluster.StreamOnDemand})
	sink.waitFor(t, "b ondemand in Redis", waitMax, func() bool { return stateInRedis("b") == cluster.StreamOnDemand })

	// The failover: both keys go back to before the change, with the same length.
	if err := c.RestoreReplace(ctx, ks.rec("o1"), time.Minute, recDump).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.RestoreReplace(ctx, ks.streams("o1"), time.Minute, listDump).Err(); err != nil {
		t.Fatal(err)
	}
	if got := stateInRedis("b"); got != cluster.StreamRunning {
		t.Fatalf("restore did not roll b back: %q", got)
	}
	sink.waitFor(t, "b ondemand in Redis again", waitMax, func() bool { return stateInRedis("b") == cluster.StreamOnDemand })
	sink.waitFor(t, "b ondemand in the sink", waitMax, func() bool {
		s, ok := sink.hasStream("o1", "b")
		return ok && s.State == cluster.StreamOnDemand
	})
}

// go-redis reports only a pipeline's first failed command. In a snapshot batch that is often
// the redis.Nil of an origin that just died, and a real failure behind it (here WRONGTYPE,
// in life a read timeout on a big list) must fail the snapshot, not read as an empty list.
func TestSnapshotErrorBehindMissingRecord(t *testing.T) {
	t.Parallel()
	srv := redistest.Standalone(t)
	const key = "snapshot-error-key"
	ctx := context.Background()
	c := dial(t, srv.URL())
	ks := keyspace{Namespace(key)}
	reg, err := NewRegistrar(c, key, testOrigin("b"), RegistrarOptions{Heartbeat: time.Second, TTL: time.Minute, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	reg.SetStreams(manyStreams("live", 3))
	if err := reg.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// "a" died a moment ago: still in the index, ahead of "b", with no record.
	c.ZAdd(ctx, ks.origins(), redis.Z{Score: float64(time.Now().UnixMilli()), Member: "a"})
	if err := c.Set(ctx, ks.streams("b"), "not a hash", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	sink := newTestSink()
	w := newWatcher(t, c, key, sink)
	newRunner(t).start(w.Run)
	// The first snapshot is applied when the watcher is ready: b must not be in it empty.
	sink.waitFor(t, "first snapshot", waitMax, w.Ready)
	if _, ok, n := sink.view("b"); ok && n == 0 {
		t.Fatal("a failed read of b's list was taken as an empty list")
	}
	// The registrar's next write fails on the broken key, and the one after rewrites it.
	reg.PutStream(cluster.Stream{Name: "live/extra", State: cluster.StreamRunning})
	if err := reg.Flush(ctx); err == nil {
		t.Fatal("flush over a broken list succeeded")
	}
	if err := reg.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "b with its 4 streams", waitMax, func() bool { _, ok, n := sink.view("b"); return ok && n == 4 })
}
