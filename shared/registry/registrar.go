package registry

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peergate/peergate/shared/cluster"
	"github.com/redis/go-redis/v9"
)

const (
	// maxDelta is the largest change set published as a delta; bigger ones make watchers re-read.
	maxDelta = 256
	// chunkFields is how many hash fields one HSET/HDEL carries in a chunked write.
	chunkFields = 500
	// chunksPerExec bounds one pipeline round trip of a chunked write.
	chunksPerExec = 16
	// indexGrace keeps expired index members around a while so clock skew does not hide origins.
	indexGrace = time.Minute
	// stepTimeout bounds one write step started by Run.
	stepTimeout = 30 * time.Second
)

// RegistrarOptions tunes a Registrar; the zero value gives the defaults.
type RegistrarOptions struct {
	// Heartbeat is the record refresh period. It defaults to 1 second.
	Heartbeat time.Duration
	// TTL is how long the record lives without a heartbeat. It defaults to 3 seconds.
	TTL time.Duration
	// Load reports the current load on every heartbeat; nil reports zeros. Calls are
	// serialised.
	Load func() cluster.Load
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Registrar keeps one origin's record and stream list current in Redis.
type Registrar struct {
	c   redis.UniversalClient
	ks  keyspace
	sg  signer
	id  string
	hb  time.Duration
	ttl time.Duration
	ld  func() cluster.Load
	log *slog.Logger

	ldMu    sync.Mutex // serialises calls to ld
	idxMu   sync.Mutex // orders index writes against Deregister
	mu      sync.Mutex // guards rec, streams, pending
	rec     cluster.Origin
	streams map[string]cluster.Stream
	pending map[string]struct{}

	kick chan struct{} // wakes the writer; capacity 1 coalesces bursts
	sem  chan struct{} // capacity 1: one Redis writer at a time

	// Owned by whoever holds sem.
	ver     uint64 // stream-list version last written
	dirty   bool   // Redis may not hold our list: rewrite it whole
	wrote   int64  // number of entries Redis should hold after our last write
	recVer  uint64 // StreamsVer of the record last written
	failing bool   // last write failed (logs only transitions)

	seq          atomic.Uint64 // heartbeat sequence
	written      atomic.Uint64 // stream-list version of the record last written
	beatFailing  atomic.Bool   // last heartbeat publish failed (logs only transitions)
	indexFailing atomic.Bool   // last index write failed (logs only transitions)
	gone         atomic.Bool   // deregistered: stop writing
	lastWrite    atomic.Int64  // unix ns of the last successful record write
	lastIndex    atomic.Int64  // unix ns of the last successful index write
}

// NewRegistrar prepares a registrar for rec; nothing is written before Run or Flush.
// A zero rec.Epoch is replaced by a random one, an empty State by "up", a zero StartedAt by now.
func NewRegistrar(c redis.UniversalClient, clusterKey string, rec cluster.Origin, o RegistrarOptions) (*Registrar, error) {
	if c == nil {
		return nil, errors.New("registry: nil redis client")
	}
	if clusterKey == "" {
		return nil, errors.New("registry: empty cluster key")
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = time.Second
	}
	if o.TTL <= 0 {
		o.TTL = 3 * time.Second
	}
	if o.TTL <= o.Heartbeat {
		return nil, fmt.Errorf("registry: TTL %s must be longer than the heartbeat %s", o.TTL, o.Heartbeat)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if rec.State == "" {
		rec.State = cluster.StateUp
	}
	if rec.Epoch == 0 {
		rec.Epoch = randomEpoch()
	}
	if rec.StartedAt.IsZero() {
		rec.StartedAt = time.Now().UTC()
	}
	rec.TTLMillis = o.TTL.Milliseconds()
	rec.Public = maps.Clone(rec.Public) // the caller keeps its map; ours is read while signing
	if err := rec.Validate(); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	sg := newSigner(clusterKey)
	return &Registrar{
		c: c, ks: keyspace{sg.ns}, sg: sg, id: rec.ID,
		hb: o.Heartbeat, ttl: o.TTL, ld: o.Load,
		log:     o.Logger.With("component", "registrar", "origin", rec.ID, "namespace", sg.ns),
		rec:     rec,
		streams: map[string]cluster.Stream{},
		pending: map[string]struct{}{},
		kick:    make(chan struct{}, 1),
		sem:     make(chan struct{}, 1),
		dirty:   true, // the first write replaces whatever an earlier process left
	}, nil
}

func randomEpoch() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if e := binary.BigEndian.Uint64(b[:]) >> 1; e != 0 { // fits in a JSON-safe-ish int64
			return e
		}
	}
}

// Epoch returns the epoch this registrar writes with.
func (r *Registrar) Epoch() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rec.Epoch
}

// Run heartbeats and writes stream changes until ctx is done or Deregister was called.
// Redis errors are logged and retried; Run returns nil.
//
// Three loops run side by side, so that no failing node holds up the others: the writer
// (the origin's own keys: record, stream list, changes), the index (the shared ZSET that
// snapshots start from) and the beat (a signed heartbeat on the channel, published even
// while the own keys cannot be written, so watchers know the origin lives while the node
// holding its keys fails over).
func (r *Registrar) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	r.do(ctx, r.beat)
	budget := max(r.ttl/2, r.hb)
	wg.Go(func() { r.every(ctx, budget, r.writeIndex) })
	wg.Go(func() { r.every(ctx, budget, r.beatStep) })
	t := time.NewTicker(r.hb)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.do(ctx, r.writeOwnStep)
		case <-r.kick:
			r.do(ctx, r.writeChanges)
		}
		if r.gone.Load() {
			return nil
		}
	}
}

// every runs step once per heartbeat, each run bounded by budget, until ctx is done or the
// origin deregistered.
func (r *Registrar) every(ctx context.Context, budget time.Duration, step func(context.Context)) {
	t := time.NewTicker(r.hb)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.gone.Load() {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, budget)
		step(sctx)
		cancel()
	}
}

func (r *Registrar) writeOwnStep(ctx context.Context) error {
	_, err := r.writeOwn(ctx)
	return err
}

// beatStep publishes one heartbeat and logs failure transitions.
func (r *Registrar) beatStep(ctx context.Context) {
	err := r.announce(ctx)
	switch {
	case err != nil && ctx.Err() == nil && !r.beatFailing.Swap(true):
		r.log.Warn("heartbeat publish failed; retrying on every heartbeat", "err", err)
	case err == nil && r.beatFailing.Swap(false):
		r.log.Info("heartbeat publishes recovered")
	}
}

// do runs one write step from Run and logs state transitions. The bound is generous:
// a whole-list rewrite of a large list may take longer than one TTL on a busy Redis.
func (r *Registrar) do(ctx context.Context, step func(context.Context) error) {
	if err := r.lock(ctx); err != nil {
		return
	}
	defer r.unlock()
	if r.gone.Load() {
		return
	}
	octx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	err := step(octx)
	switch {
	case err != nil && ctx.Err() == nil && !r.failing:
		r.failing = true
		r.log.Warn("registry write failed; will rewrite when Redis answers", "err", err)
	case err == nil && r.failing:
		r.failing = false
		r.log.Info("registry writes recovered")
	}
}

func (r *Registrar) lock(ctx context.Context) error {
	select {
	case r.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Registrar) unlock() { <-r.sem }

func (r *Registrar) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// PutStream adds or updates a stream; the change is written and published at once by Run.
// A stream without a name or with a state other than running/ondemand is logged and ignored.
func (r *Registrar) PutStream(s cluster.Stream) {
	if err := validStream(s, s.Name); err != nil || s.Name == "" {
		r.log.Warn("stream not registered", "stream", s.Name, "state", s.State)
		return
	}
	r.mu.Lock()
	r.streams[s.Name] = s
	r.pending[s.Name] = struct{}{}
	r.mu.Unlock()
	r.wake()
}

// RemoveStream removes a stream; the change is written and published at once by Run.
func (r *Registrar) RemoveStream(name string) {
	r.mu.Lock()
	if _, ok := r.streams[name]; ok {
		delete(r.streams, name)
		r.pending[name] = struct{}{}
	}
	r.mu.Unlock()
	r.wake()
}

// SetStreams replaces the whole stream list; only the differences are written.
func (r *Registrar) SetStreams(list []cluster.Stream) {
	next := make(map[string]cluster.Stream, len(list))
	for _, s := range list {
		if err := validStream(s, s.Name); err != nil || s.Name == "" {
			r.log.Warn("stream not registered", "stream", s.Name, "state", s.State)
			continue
		}
		next[s.Name] = s
	}
	r.mu.Lock()
	for name, old := range r.streams {
		if s, ok := next[name]; !ok || s != old {
			r.pending[name] = struct{}{}
		}
	}
	for name := range next {
		if _, ok := r.streams[name]; !ok {
			r.pending[name] = struct{}{}
		}
	}
	r.streams = next
	r.mu.Unlock()
	r.wake()
}

// Drain marks the origin draining and writes and publishes that at once.
func (r *Registrar) Drain(ctx context.Context) error {
	r.mu.Lock()
	r.rec.State = cluster.StateDraining
	r.mu.Unlock()
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.unlock()
	if r.gone.Load() {
		return errors.New("registry: origin is deregistered")
	}
	if err := r.beat(ctx); err != nil {
		return fmt.Errorf("registry: drain: %w", err)
	}
	return nil
}

// Flush returns when every change queued so far is in Redis, or with the write error.
func (r *Registrar) Flush(ctx context.Context) error {
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.unlock()
	if r.gone.Load() {
		return errors.New("registry: origin is deregistered")
	}
	var err error
	if r.dirty {
		err = r.beat(ctx)
	} else {
		err = r.writeChanges(ctx)
	}
	if err != nil {
		return fmt.Errorf("registry: flush: %w", err)
	}
	return nil
}

// Deregister deletes the origin's keys and publishes a signed "bye"; Run stops writing
// even when this fails, so the record then expires after its TTL.
func (r *Registrar) Deregister(ctx context.Context) error {
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.unlock()
	r.gone.Store(true)
	// No index write of the loop may land after the removal below.
	r.idxMu.Lock()
	defer r.idxMu.Unlock()
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.ks.rec(r.id))
		p.Del(ctx, r.ks.streams(r.id), r.ks.streamsTmp(r.id))
		p.ZRem(ctx, r.ks.origins(), r.id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("registry: deregister: %w", err)
	}
	bye, err := r.sg.sealEvent(eventBye, r.id, byeBody{Epoch: r.Epoch()})
	if err != nil {
		return err
	}
	if err := r.publish(ctx, bye); err != nil {
		return fmt.Errorf("registry: publish bye: %w", err)
	}
	r.log.Info("origin deregistered")
	return nil
}

// record returns the record to write now, sealed.
func (r *Registrar) record() (cluster.Origin, []byte, error) { return r.recordAt(r.ver) }

// recordAt returns the current record announcing stream-list version ver, sealed.
func (r *Registrar) recordAt(ver uint64) (cluster.Origin, []byte, error) {
	r.mu.Lock()
	rec := r.rec
	r.mu.Unlock()
	if r.ld != nil {
		r.ldMu.Lock() // the writer and the heartbeat loop both sample; Load need not be safe for that
		rec.Load = r.ld()
		r.ldMu.Unlock()
	}
	rec.StreamsVer = ver
	blob, err := r.sg.seal(kindRecord, r.id, rec)
	return rec, blob, err
}

// beat writes the origin's own keys (pending changes or the whole list when dirty, then the
// record) and publishes a heartbeat at once, for Flush, Drain and changes that need watchers
// to re-read. The heartbeat goes out even when the own keys could not be written.
func (r *Registrar) beat(ctx context.Context) error {
	_, ownErr := r.writeOwn(ctx)
	pubErr := r.announce(ctx)
	// The index last and bounded: it must not hold up the heartbeat, and its failure is its own.
	ictx, cancel := context.WithTimeout(ctx, max(r.ttl/2, r.hb))
	r.writeIndex(ictx)
	cancel()
	if pubErr != nil {
		return errors.Join(ownErr, fmt.Errorf("publish heartbeat: %w", pubErr))
	}
	return ownErr
}

// announce publishes a heartbeat carrying the current record with the stream-list version
// last written, so a watcher re-reads only what Redis holds.
func (r *Registrar) announce(ctx context.Context) error {
	// The sequence number is taken before the record is read: the heartbeat loop and Drain
	// announce side by side, and watchers keep only the highest seq, so a beat numbered after
	// Drain's must describe a state at least as new (draining), never the "up" read before it.
	seq := r.seq.Add(1)
	rec, _, err := r.recordAt(r.written.Load())
	if err != nil {
		return err
	}
	ev, err := r.sg.sealEvent(eventBeat, r.id, beatBody{Seq: seq, Rec: rec})
	if err != nil {
		return err
	}
	return r.publish(ctx, ev)
}

// writeOwn writes pending changes (or the whole list when dirty) and the record with its TTL,
// rewriting the list when Redis turns out to have lost it. It returns the record written.
func (r *Registrar) writeOwn(ctx context.Context) (cluster.Origin, error) {
	for attempt := 0; ; attempt++ {
		if r.dirty {
			if err := r.rewrite(ctx); err != nil {
				return cluster.Origin{}, err
			}
		} else if err := r.writeChanges(ctx); err != nil {
			return cluster.Origin{}, err
		}
		rec, blob, err := r.record()
		if err != nil {
			return cluster.Origin{}, err
		}
		var hlen *redis.IntCmd
		var prev *redis.StatusCmd
		cmds, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			// XX: a record that expired is not recreated over a list that expired with it;
			// its absence (prev nil) makes the loop rewrite both together.
			prev = p.SetArgs(ctx, r.ks.rec(r.id), blob, redis.SetArgs{Mode: "XX", TTL: r.ttl, Get: true})
			p.PExpire(ctx, r.ks.streams(r.id), r.ttl)
			hlen = p.HLen(ctx, r.ks.streams(r.id))
			return nil
		})
		if err := pipeErr(cmds, err); err != nil {
			r.dirty = true
			return cluster.Origin{}, fmt.Errorf("heartbeat: %w", err)
		}
		if (hlen.Val() != r.wrote || r.recordLost(prev)) && attempt == 0 {
			// Redis lost our list (restart, failover, eviction): rewrite it, then beat again.
			r.log.Info("stream list missing in Redis; rewriting", "have", r.wrote, "redis", hlen.Val())
			r.dirty = true
			continue
		}
		r.recVer = rec.StreamsVer
		r.wroteAt(rec.StreamsVer)
		return rec, nil
	}
}

// writeIndex adds the origin to the shared index and trims long-dead members. The index only
// helps watchers find origins at a snapshot; its node failing must not stop the other writes,
// so it runs in its own loop (and after the heartbeat of beat) and is retried on every heartbeat.
func (r *Registrar) writeIndex(ctx context.Context) {
	r.idxMu.Lock()
	defer r.idxMu.Unlock()
	if r.gone.Load() {
		return
	}
	now := time.Now()
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, r.ks.origins(), redis.Z{Score: float64(now.Add(r.ttl).UnixMilli()), Member: r.id})
		p.ZRemRangeByScore(ctx, r.ks.origins(), "-inf", fmt.Sprint(now.Add(-indexGrace).UnixMilli()))
		return nil
	})
	switch {
	case err != nil && !r.indexFailing.Swap(true):
		r.log.Warn("registry index write failed; retrying on every heartbeat", "err", err)
	case err == nil:
		if r.indexFailing.Swap(false) {
			r.log.Info("registry index writes recovered")
		}
		r.lastIndex.Store(time.Now().UnixNano())
	}
}

// wroteAt notes a successful write of the record with stream-list version ver.
func (r *Registrar) wroteAt(ver uint64) {
	r.written.Store(ver)
	r.lastWrite.Store(time.Now().UnixNano())
}

// LastWrite is when the record last reached Redis; zero before the first write.
func (r *Registrar) LastWrite() time.Time { return unixNano(r.lastWrite.Load()) }

// LastIndexWrite is when the shared index last took the origin; zero before the first time.
func (r *Registrar) LastIndexWrite() time.Time { return unixNano(r.lastIndex.Load()) }

// TTL is the record's time to live.
func (r *Registrar) TTL() time.Duration { return r.ttl }

// CheckReady is an origin's registry readiness: an error before the first write, and once
// one TTL passed without a successful write (gateways then stop finding the origin in Redis).
func (r *Registrar) CheckReady() error {
	last := r.LastWrite()
	if last.IsZero() {
		return errors.New("not registered yet")
	}
	if age := time.Since(last); age > r.ttl {
		return fmt.Errorf("no successful registry write for %s (TTL %s)", age.Round(100*time.Millisecond), r.ttl)
	}
	return nil
}

func unixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// takePending returns the queued changes in name order and the list size after them.
func (r *Registrar) takePending() ([]cluster.StreamChange, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changes := make([]cluster.StreamChange, 0, len(r.pending))
	for name := range r.pending {
		if s, ok := r.streams[name]; ok {
			changes = append(changes, cluster.StreamChange{Stream: s})
		} else {
			changes = append(changes, cluster.StreamChange{Stream: cluster.Stream{Name: name}, Removed: true})
		}
	}
	clear(r.pending)
	slices.SortFunc(changes, func(a, b cluster.StreamChange) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return changes, int64(len(r.streams))
}

// writeChanges writes queued changes: small sets in one transaction plus a delta event,
// large ones in pipelined chunks followed by a heartbeat that makes watchers re-read.
func (r *Registrar) writeChanges(ctx context.Context) error {
	if r.dirty {
		return r.beat(ctx)
	}
	changes, total := r.takePending()
	if len(changes) == 0 {
		return nil
	}
	if len(changes) > maxDelta {
		return r.writeLarge(ctx, changes, total)
	}
	from := r.ver
	r.ver++
	rec, blob, err := r.record()
	if err != nil {
		return err
	}
	set, del, err := r.sealChanges(changes)
	if err != nil {
		return err
	}
	var hlen *redis.IntCmd
	var setRec *redis.StatusCmd
	_, err = r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if len(set) > 0 {
			p.HSet(ctx, r.ks.streams(r.id), set...)
		}
		if len(del) > 0 {
			p.HDel(ctx, r.ks.streams(r.id), del...)
		}
		p.PExpire(ctx, r.ks.streams(r.id), r.ttl)
		hlen = p.HLen(ctx, r.ks.streams(r.id))
		// XX: never create the record here. If it expired (a stalled writer, a failover) the
		// list did too, and only the whole-list rewrite may bring both back; a record over a
		// partial or missing list would read as an origin without those streams.
		setRec = p.SetArgs(ctx, r.ks.rec(r.id), blob, redis.SetArgs{Mode: "XX", TTL: r.ttl})
		return nil
	})
	if errors.Is(err, redis.Nil) && errors.Is(setRec.Err(), redis.Nil) {
		r.dirty = true
		return r.beat(ctx)
	}
	if err != nil {
		r.dirty = true
		return fmt.Errorf("write stream changes: %w", err)
	}
	r.wrote, r.recVer = total, rec.StreamsVer
	// The heartbeat loop announces this version only after the delta went out (below), or a
	// watcher would see the beat first and re-read the whole list instead of applying the delta.
	r.lastWrite.Store(time.Now().UnixNano())
	defer func() {
		if rec.StreamsVer > r.written.Load() { // a rewrite below may have written a newer one
			r.written.Store(rec.StreamsVer)
		}
	}()
	if hlen.Val() != total {
		// Changes landed on a list Redis had lost: put the whole list back now.
		r.dirty = true
		return r.beat(ctx)
	}
	ev, err := r.sg.sealEvent(eventDelta, r.id, deltaBody{Epoch: rec.Epoch, FromVersion: from, Version: r.ver, Changes: changes})
	if err != nil {
		return err
	}
	if err := r.publish(ctx, ev); err != nil {
		// Watchers catch up from the version in the next heartbeat.
		return fmt.Errorf("publish delta: %w", err)
	}
	return nil
}

// sealChanges signs upserts as HSET arguments and collects removed names.
func (r *Registrar) sealChanges(changes []cluster.StreamChange) (set []any, del []string, err error) {
	for _, ch := range changes {
		if ch.Removed {
			del = append(del, ch.Name)
			continue
		}
		blob, err := r.sg.seal(kindStream, r.id, ch.Stream)
		if err != nil {
			return nil, nil, err
		}
		set = append(set, ch.Name, blob)
	}
	return set, del, nil
}

// writeLarge applies a big change set in pipelined chunks, then beats with the new version.
func (r *Registrar) writeLarge(ctx context.Context, changes []cluster.StreamChange, total int64) error {
	r.ver++
	key := r.ks.streams(r.id)
	if err := r.chunked(ctx, key, changes); err != nil {
		r.dirty = true
		return err
	}
	r.wrote = total
	return r.beat(ctx)
}

// chunked writes changes to key with HSET/HDEL of chunkFields each, chunksPerExec per round trip.
func (r *Registrar) chunked(ctx context.Context, key string, changes []cluster.StreamChange) error {
	for len(changes) > 0 {
		_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for n := 0; n < chunksPerExec && len(changes) > 0; n++ {
				chunk := changes[:min(chunkFields, len(changes))]
				changes = changes[len(chunk):]
				set, del, err := r.sealChanges(chunk)
				if err != nil {
					return err
				}
				if len(set) > 0 {
					p.HSet(ctx, key, set...)
				}
				if len(del) > 0 {
					p.HDel(ctx, key, del...)
				}
			}
			p.PExpire(ctx, key, r.ttl)
			return nil
		})
		if err != nil {
			return fmt.Errorf("chunked stream write: %w", err)
		}
	}
	return nil
}

// rewrite replaces the whole list: staged in a same-slot temporary key, then renamed
// in one transaction with the record, so readers never see a half-written list.
func (r *Registrar) rewrite(ctx context.Context) error {
	r.mu.Lock()
	all := make([]cluster.StreamChange, 0, len(r.streams))
	for _, s := range r.streams {
		all = append(all, cluster.StreamChange{Stream: s})
	}
	clear(r.pending)
	r.mu.Unlock()
	r.ver++
	rec, blob, err := r.record()
	if err != nil {
		return err
	}
	tmp, key := r.ks.streamsTmp(r.id), r.ks.streams(r.id)
	if err := r.c.Del(ctx, tmp).Err(); err != nil {
		return fmt.Errorf("rewrite: %w", err)
	}
	if err := r.chunked(ctx, tmp, all); err != nil {
		return fmt.Errorf("rewrite: %w", err)
	}
	_, err = r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if len(all) > 0 {
			p.Rename(ctx, tmp, key)
			p.PExpire(ctx, key, r.ttl)
		} else {
			p.Del(ctx, key, tmp)
		}
		p.Set(ctx, r.ks.rec(r.id), blob, r.ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("rewrite: %w", err)
	}
	r.dirty = false
	r.wrote, r.recVer = int64(len(all)), rec.StreamsVer
	r.wroteAt(rec.StreamsVer)
	return nil
}

// recordLost reports whether the record Redis held before a heartbeat is not the last one we
// wrote. Then Redis lost writes (failover to a lagging replica, restart from an older dump)
// and our list there may be stale even when its length is right.
func (r *Registrar) recordLost(prev *redis.StatusCmd) bool {
	blob, err := prev.Bytes()
	if err != nil {
		return true
	}
	var old cluster.Origin
	if err := r.sg.open(kindRecord, r.id, blob, &old); err != nil {
		return true
	}
	return old.Epoch != r.Epoch() || old.StreamsVer != r.recVer
}

// pipeErr is the first real failure of a pipeline. go-redis reports only the first failed
// command, and a missing key (redis.Nil) is not a failure but may hide one behind it.
func pipeErr(cmds []redis.Cmder, err error) error {
	if !errors.Is(err, redis.Nil) {
		return err
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
}

// publish sends one event. go-redis treats PUBLISH as keyless and sends it to a random
// Cluster node; events of one origin must leave through one node to arrive in order, so
// on Cluster they go to the master owning the channel name's slot (where watchers subscribe).
func (r *Registrar) publish(ctx context.Context, msg []byte) error {
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, r.ks.events())
		if err != nil {
			cc.ReloadState(ctx)
			return err
		}
		err = node.Publish(ctx, r.ks.events(), msg).Err()
		if err != nil {
			// The node client bypasses the Cluster client's hooks: ask for the new slot map here.
			cc.ReloadState(ctx)
		}
		return err
	}
	return r.c.Publish(ctx, r.ks.events(), msg).Err()
}
