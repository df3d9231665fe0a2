package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peergate/peergate/shared/cluster"
	"github.com/redis/go-redis/v9"
)

const (
	expiryEvery    = 25 * time.Millisecond   // local TTL check period (brief: at least every 50 ms)
	pingEvery      = 500 * time.Millisecond  // health ping on the subscription
	contactTimeout = 3 * pingEvery           // silence after which Redis counts as away
	expiryContact  = pingEvery + pingEvery/2 // expire origins only while contact is this fresh
	backoffMin     = 50 * time.Millisecond
	backoffMax     = 5 * time.Second
	snapshotBatch  = 128             // origins per snapshot pipeline
	clockSkewGrace = 5 * time.Second // index scores are the writers' clocks
	receiveTimeout = time.Second
)

// WatcherOptions tunes a Watcher; the zero value gives the defaults.
type WatcherOptions struct {
	// AntiEntropy is the period of full re-reads. It defaults to 30 seconds.
	AntiEntropy time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock for deadlines and stats. It defaults to time.Now.
	Now func() time.Time
}

// WatcherStats is a point-in-time view of a Watcher's health, for metrics and readiness.
type WatcherStats struct {
	Connected         bool      // subscribed and snapshot loaded
	LastSync          time.Time // last full snapshot
	LastContact       time.Time // last message or pong from Redis
	Origins           int       // origins currently held
	Events            uint64    // channel messages handled
	SignatureFailures uint64    // records, stream entries and events dropped for a bad MAC
	InvalidRecords    uint64    // signed but malformed or invalid, dropped
	Resyncs           uint64    // full snapshots (start, reconnect, anti-entropy)
	GapResyncs        uint64    // single-origin re-reads: new origin, version gap, epoch change
	Expired           uint64    // origins dropped by the local TTL
	Disconnects       uint64    // sessions lost
}

// Watcher keeps a Sink in step with the registry: snapshot, then pub/sub events.
type Watcher struct {
	c    redis.UniversalClient
	ks   keyspace
	sg   signer
	key  string
	sink Sink
	ae   time.Duration
	now  func() time.Time
	log  *slog.Logger

	held map[string]*heldOrigin // owned by the Run goroutine

	mu    sync.Mutex // guards stats
	stats WatcherStats
	ready atomic.Bool
	wg    sync.WaitGroup // receiver goroutines
}

// heldOrigin is what the Watcher knows of one origin beyond what the Sink stores.
type heldOrigin struct {
	epoch    uint64
	ver      uint64
	seq      uint64
	deadline time.Time
	ttl      time.Duration // the record's TTL, to grant a grace period after Redis comes back
}

// NewWatcher returns a Watcher feeding sink; Run does the work.
func NewWatcher(c redis.UniversalClient, clusterKey string, sink Sink, o WatcherOptions) *Watcher {
	if o.AntiEntropy <= 0 {
		o.AntiEntropy = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	sg := newSigner(clusterKey)
	return &Watcher{
		c: c, ks: keyspace{sg.ns}, sg: sg, key: clusterKey, sink: sink,
		ae: o.AntiEntropy, now: o.Now,
		log:  o.Logger.With("component", "watcher", "namespace", sg.ns),
		held: map[string]*heldOrigin{},
	}
}

// Ready reports whether a first full snapshot reached the Sink; it stays true while Redis is away.
func (w *Watcher) Ready() bool { return w.ready.Load() }

// Stats returns a copy of the current counters.
func (w *Watcher) Stats() WatcherStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

func (w *Watcher) count(f func(s *WatcherStats)) {
	w.mu.Lock()
	f(&w.stats)
	w.mu.Unlock()
}

// Run follows the registry until ctx is done, reconnecting with backoff. It returns nil
// on cancellation and an error only for unusable settings.
func (w *Watcher) Run(ctx context.Context) error {
	if w.c == nil || w.sink == nil {
		return errors.New("registry: watcher needs a client and a sink")
	}
	if w.key == "" {
		return errors.New("registry: empty cluster key")
	}
	defer w.wg.Wait()
	backoff := backoffMin
	for {
		start := time.Now()
		err := w.session(ctx)
		w.count(func(s *WatcherStats) {
			if s.Connected {
				s.Disconnects++
			}
			s.Connected = false
		})
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > 2*backoffMax {
			backoff = backoffMin
		}
		w.log.Warn("registry session ended; keeping last view", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// session subscribes, loads a snapshot and applies events until Redis goes away.
func (w *Watcher) session(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	ps := w.c.Subscribe(sctx, w.ks.events())
	defer func() {
		cancel()
		_ = ps.Close()
	}()
	// Subscribed before the snapshot, so no change falls between the two.
	m, err := ps.ReceiveTimeout(sctx, ioTimeout)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if _, ok := m.(*redis.Subscription); !ok {
		return fmt.Errorf("subscribe: unexpected reply %T", m)
	}
	inbox := make(chan any, 4096)
	w.wg.Add(1)
	go w.receive(sctx, ps, inbox)

	if err := w.resync(sctx, true); err != nil {
		return err
	}
	w.count(func(s *WatcherStats) { s.Connected, s.LastContact = true, w.now() })
	w.log.Info("registry connected", "origins", len(w.held))
	lastContact := time.Now()

	expiry := time.NewTicker(expiryEvery)
	defer expiry.Stop()
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	ae := time.NewTicker(w.ae)
	defer ae.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-inbox:
			if err := w.process(sctx, m); err != nil {
				return err
			}
			lastContact = time.Now()
		case <-ping.C:
			if err := ps.Ping(sctx); err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		case <-expiry.C:
			quiet := time.Since(lastContact)
			if quiet > contactTimeout {
				return fmt.Errorf("no answer from Redis for %s", quiet.Round(time.Millisecond))
			}
			// A silent Redis is not proof the origins died: expire only on fresh contact,
			// and only after applying the heartbeats already queued.
			if quiet < expiryContact {
				for len(inbox) > 0 {
					if err := w.process(sctx, <-inbox); err != nil {
						return err
					}
				}
				w.expire()
			}
		case <-ae.C:
			if err := w.resync(sctx, false); err != nil {
				return err
			}
			lastContact = time.Now() // a long snapshot must not read as silence
		}
	}
}

// process applies one item from the receiver: a message, a pong, or the error that ended it.
func (w *Watcher) process(ctx context.Context, m any) error {
	switch m := m.(type) {
	case error:
		return m
	case *redis.Message:
		w.handle(ctx, m.Channel, m.Payload)
	}
	w.count(func(s *WatcherStats) { s.LastContact = w.now() })
	return nil
}

// receive moves subscription traffic into inbox until the session ends or fails.
func (w *Watcher) receive(ctx context.Context, ps *redis.PubSub, inbox chan<- any) {
	defer w.wg.Done()
	for {
		m, err := ps.ReceiveTimeout(ctx, receiveTimeout)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				continue
			}
			m = fmt.Errorf("receive: %w", err)
		}
		select {
		case inbox <- m:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// expire drops origins whose heartbeat deadline passed.
func (w *Watcher) expire() {
	now := w.now()
	for id, h := range w.held {
		if now.After(h.deadline) {
			delete(w.held, id)
			// Counted before the Sink changes, so whoever sees the origin gone also sees why.
			w.count(func(s *WatcherStats) { s.Expired++; s.Origins = len(w.held) })
			w.sink.DropOrigin(id)
			w.log.Info("origin expired", "origin", id)
		}
	}
}

// fetched is one origin as read from Redis, before verification.
type fetched struct {
	id      string
	rec     *redis.StringCmd
	pttl    *redis.DurationCmd
	streams *redis.MapStringStringCmd
}

func (w *Watcher) queueFetch(ctx context.Context, p redis.Pipeliner, id string) fetched {
	return fetched{
		id:      id,
		rec:     p.Get(ctx, w.ks.rec(id)), // before the list: the list is then at least as new
		pttl:    p.PTTL(ctx, w.ks.rec(id)),
		streams: p.HGetAll(ctx, w.ks.streams(id)),
	}
}

// verify turns a fetch into a view; ok is false when the origin is absent or untrusted.
func (w *Watcher) verify(f fetched) (OriginView, time.Time, bool) {
	blob, err := f.rec.Bytes()
	if err != nil {
		return OriginView{}, time.Time{}, false
	}
	var rec cluster.Origin
	if err := w.sg.open(kindRecord, f.id, blob, &rec); err != nil {
		w.reject(f.id, "record", err)
		return OriginView{}, time.Time{}, false
	}
	if rec.ID != f.id {
		w.reject(f.id, "record", fmt.Errorf("record id %q under another origin's key", rec.ID))
		return OriginView{}, time.Time{}, false
	}
	if err := rec.Validate(); err != nil {
		w.reject(f.id, "record", err)
		return OriginView{}, time.Time{}, false
	}
	ttl := time.Duration(rec.TTLMillis) * time.Millisecond
	if d, err := f.pttl.Result(); err == nil && d > 0 {
		ttl = d
	}
	fields, _ := f.streams.Result()
	streams := make([]cluster.Stream, 0, len(fields))
	var bad int
	var firstErr error
	for name, blob := range fields {
		var s cluster.Stream
		err := w.sg.open(kindStream, f.id, []byte(blob), &s)
		if err == nil {
			err = validStream(s, name)
		}
		if err != nil {
			bad++
			if firstErr == nil {
				firstErr = err
			}
			w.countReject(err)
			continue
		}
		streams = append(streams, s)
	}
	if bad > 0 {
		w.log.Warn("stream entries dropped", "origin", f.id, "count", bad, "err", firstErr)
	}
	return OriginView{Origin: rec, Streams: streams}, w.now().Add(ttl), true
}

func validStream(s cluster.Stream, field string) error {
	if s.Name != field {
		return fmt.Errorf("stream entry %q stored under field %q", s.Name, field)
	}
	if s.State != cluster.StreamRunning && s.State != cluster.StreamOnDemand {
		return fmt.Errorf("stream %q: state %q is invalid", s.Name, s.State)
	}
	return nil
}

func (w *Watcher) countReject(err error) {
	w.count(func(s *WatcherStats) {
		if errors.Is(err, ErrBadSignature) {
			s.SignatureFailures++
		} else {
			s.InvalidRecords++
		}
	})
}

func (w *Watcher) reject(id, what string, err error) {
	w.countReject(err)
	w.log.Warn("registry data dropped", "origin", id, "what", what, "err", err)
}

// resync reads every live origin and replaces the Sink's whole view.
func (w *Watcher) resync(ctx context.Context, reconnect bool) error {
	minScore := strconv.FormatInt(w.now().Add(-clockSkewGrace).UnixMilli(), 10)
	ids, err := w.c.ZRangeByScore(ctx, w.ks.origins(), &redis.ZRangeBy{Min: minScore, Max: "+inf"}).Result()
	if err != nil {
		return fmt.Errorf("snapshot index: %w", err)
	}
	views := make([]OriginView, 0, len(ids))
	held := make(map[string]*heldOrigin, len(ids))
	for len(ids) > 0 {
		batch := ids[:min(snapshotBatch, len(ids))]
		ids = ids[len(batch):]
		fs := make([]fetched, 0, len(batch))
		cmds, err := w.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range batch {
				if cluster.ValidID(id) {
					fs = append(fs, w.queueFetch(ctx, p, id))
				}
			}
			return nil
		})
		if err := pipeErr(cmds, err); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		for _, f := range fs {
			v, deadline, ok := w.verify(f)
			if !ok {
				continue
			}
			views = append(views, v)
			h := &heldOrigin{epoch: v.Origin.Epoch, ver: v.Origin.StreamsVer, deadline: deadline, ttl: ttlOf(v.Origin)}
			if old := w.held[f.id]; old != nil && old.epoch == h.epoch {
				h.seq = old.seq
			}
			held[f.id] = h
		}
	}
	// An origin we hold that the snapshot lacks is not proof it died: a Redis that restarted
	// empty has not yet been rewritten by its origins. Keep it until its deadline (extended by
	// a fresh TTL when this snapshot follows a reconnect); only a bye or expiry drops it.
	now := w.now()
	var kept int
	for id, h := range w.held {
		if _, ok := held[id]; ok {
			continue
		}
		if reconnect {
			h.deadline = maxTime(h.deadline, now.Add(h.ttl))
		}
		if now.After(h.deadline) {
			continue
		}
		held[id] = h
		kept++
	}
	if kept == 0 {
		w.sink.ReplaceAll(views)
	} else {
		for i := range views {
			w.sink.PutOrigin(views[i].Origin)
			w.sink.PutStreams(views[i].Origin.ID, views[i].Streams)
		}
		for id := range w.held {
			if _, ok := held[id]; !ok {
				w.sink.DropOrigin(id)
			}
		}
	}
	w.held = held
	w.ready.Store(true)
	w.count(func(s *WatcherStats) { s.Resyncs++; s.LastSync = w.now(); s.Origins = len(held) })
	return nil
}

// reread fetches one origin again after a gap, an epoch change or a new origin's heartbeat.
func (w *Watcher) reread(ctx context.Context, id string) {
	var f fetched
	cmds, err := w.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		f = w.queueFetch(ctx, p, id)
		return nil
	})
	w.count(func(s *WatcherStats) { s.GapResyncs++ })
	if err := pipeErr(cmds, err); err != nil {
		// Left as is; the session's health checks or anti-entropy repair it.
		w.log.Warn("origin re-read failed", "origin", id, "err", err)
		return
	}
	v, deadline, ok := w.verify(f)
	if !ok {
		if _, held := w.held[id]; held {
			delete(w.held, id)
			w.sink.DropOrigin(id)
			w.count(func(s *WatcherStats) { s.Origins = len(w.held) })
		}
		return
	}
	h := &heldOrigin{epoch: v.Origin.Epoch, ver: v.Origin.StreamsVer, deadline: deadline, ttl: ttlOf(v.Origin)}
	if old := w.held[id]; old != nil && old.epoch == h.epoch {
		h.seq = old.seq
	}
	w.held[id] = h
	w.sink.PutOrigin(v.Origin)
	w.sink.PutStreams(id, v.Streams)
	w.count(func(s *WatcherStats) { s.Origins = len(w.held) })
}

// handle applies one channel message.
func (w *Watcher) handle(ctx context.Context, channel, payload string) {
	w.count(func(s *WatcherStats) { s.Events++ })
	if channel != w.ks.events() {
		return
	}
	ev, err := w.sg.openEvent([]byte(payload))
	if err != nil {
		w.reject(ev.Origin, "event", err)
		return
	}
	switch ev.Kind {
	case eventBeat:
		var b beatBody
		if err := decodeBody(ev.Body, &b); err != nil {
			w.reject(ev.Origin, "heartbeat", err)
			return
		}
		w.onBeat(ctx, ev.Origin, b)
	case eventDelta:
		var d deltaBody
		if err := decodeBody(ev.Body, &d); err != nil {
			w.reject(ev.Origin, "delta", err)
			return
		}
		w.onDelta(ctx, ev.Origin, d)
	case eventBye:
		var b byeBody
		if err := decodeBody(ev.Body, &b); err != nil {
			w.reject(ev.Origin, "bye", err)
			return
		}
		if h := w.held[ev.Origin]; h != nil && h.epoch == b.Epoch {
			delete(w.held, ev.Origin)
			w.sink.DropOrigin(ev.Origin)
			w.count(func(s *WatcherStats) { s.Origins = len(w.held) })
			w.log.Info("origin left", "origin", ev.Origin)
		}
	}
}

func (w *Watcher) onBeat(ctx context.Context, id string, b beatBody) {
	rec := b.Rec
	if rec.ID != id {
		w.reject(id, "heartbeat", fmt.Errorf("record id %q in another origin's event", rec.ID))
		return
	}
	if err := rec.Validate(); err != nil {
		w.reject(id, "heartbeat", err)
		return
	}
	h := w.held[id]
	if h != nil && h.epoch == rec.Epoch && b.Seq <= h.seq {
		return // older than what we applied
	}
	if h == nil || h.epoch != rec.Epoch || rec.StreamsVer > h.ver {
		w.reread(ctx, id)
		if h = w.held[id]; h != nil && h.epoch == rec.Epoch {
			h.seq = b.Seq
		}
		return
	}
	h.seq = b.Seq
	h.deadline = w.now().Add(time.Duration(rec.TTLMillis) * time.Millisecond)
	w.sink.PutOrigin(rec)
}

func (w *Watcher) onDelta(ctx context.Context, id string, d deltaBody) {
	h := w.held[id]
	switch {
	case h == nil:
		w.reread(ctx, id)
	case h.epoch == d.Epoch && d.FromVersion == h.ver:
		changes := d.Changes[:0:0]
		for _, ch := range d.Changes {
			if ch.Removed {
				if ch.Name != "" {
					changes = append(changes, ch)
				}
				continue
			}
			if err := validStream(ch.Stream, ch.Name); err != nil || ch.Name == "" {
				w.reject(id, "delta entry", fmt.Errorf("stream %q: invalid", ch.Name))
				continue
			}
			changes = append(changes, ch)
		}
		h.ver = d.Version
		w.sink.ApplyStreams(id, changes)
	case h.epoch == d.Epoch && d.Version <= h.ver:
		// Already contained in what we read.
	default:
		w.reread(ctx, id)
	}
}

func ttlOf(o cluster.Origin) time.Duration { return time.Duration(o.TTLMillis) * time.Millisecond }

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
