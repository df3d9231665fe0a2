package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peergate/peergate/shared/cluster"
	"github.com/redis/go-redis/v9"
)

const (
	expiryEvery     = 25 * time.Millisecond   // local TTL check period (brief: at least every 50 ms)
	pingEvery       = 500 * time.Millisecond  // health ping on the subscription
	contactTimeout  = 3 * pingEvery           // silence after which Redis counts as away
	expiryContact   = pingEvery + pingEvery/2 // expire origins only while contact is this fresh
	backoffMin      = 50 * time.Millisecond
	backoffMax      = 2 * time.Second
	snapshotBatch   = 128             // origins per snapshot pipeline
	snapshotRetries = 3               // further reads of the origins whose snapshot read failed
	clockSkewGrace  = 5 * time.Second // index scores are the writers' clocks
	receiveTimeout  = time.Second
	verifyTimeout   = 500 * time.Millisecond // one read-before-drop round trip; short, it blocks event handling
	recheckEvery    = 200 * time.Millisecond // how often an overdue origin is asked about again
	massMin         = 2                      // vanishing together counts as registry trouble from this many origins
	reconnectGrace  = 3 * time.Second        // at least this long for origins to rewrite a failed-over or restarted Redis
	massGrace       = 10 * time.Second       // origins of a mass expiry still missing this long after it ended are deaths
)

// WatcherOptions tunes a Watcher; the zero value gives the defaults.
type WatcherOptions struct {
	// AntiEntropy is the period of full re-reads. It defaults to 30 seconds.
	AntiEntropy time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock for deadlines and stats. It defaults to time.Now. Snapshot reads
	// call it from several goroutines at once.
	Now func() time.Time
	// MassExpiryHold bounds how long origins that vanished from Redis together (most of the
	// view at once, read as registry trouble rather than as deaths) are still served. It
	// defaults to 30 seconds.
	MassExpiryHold time.Duration
	// MaxClockSkew is how far an origin's clock may differ from this one. A record or
	// heartbeat is trusted from its signed issue time until issue time + its TTL + MaxClockSkew,
	// and dropped as a replay once older (or when issued more than MaxClockSkew ahead). Zero
	// means zero (the config sets the default); a negative value counts as zero.
	MaxClockSkew time.Duration
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
	StaleRecords      uint64    // signed but stale, dropped as replays: past issue time + TTL + clock skew, or of an older epoch
	Resyncs           uint64    // full snapshots (start, reconnect, anti-entropy)
	GapResyncs        uint64    // single-origin re-reads: new origin, version gap, epoch change
	Expired           uint64    // origins dropped after Redis confirmed their record gone
	Disconnects       uint64    // sessions lost

	// Overdue origins passed their deadline without a heartbeat and are still served: Redis
	// could not be asked (a failed read keeps an origin) or most origins vanished at once.
	Overdue      int
	OverdueSince time.Time // the earliest deadline among them; zero when none
	MassHeld     int       // overdue origins kept because most of the view vanished at once
	KeptUnread   uint64    // origins kept past their deadline because the read before dropping failed
	MassExpiries uint64    // episodes of most origins vanishing at once (kept, reported degraded)
}

// Health summarises how far the served copy can be trusted, for readiness and metrics.
type Health struct {
	// Degraded is set while the gateway serves a copy Redis has not confirmed: the registry is
	// unreachable, origins are overdue, or most of them vanished at once.
	Degraded bool
	// CopyAge is how long the oldest unconfirmed part of the copy has gone unconfirmed; zero
	// while everything is current.
	CopyAge time.Duration
	// Reason explains Degraded in one line for /readyz; empty when not degraded.
	// String adds the copy's age.
	Reason string
}

// String is the reason with the copy's age, or "current".
func (h Health) String() string {
	if !h.Degraded {
		return "current"
	}
	return fmt.Sprintf("%s (copy unconfirmed for %s)", h.Reason, h.CopyAge.Round(100*time.Millisecond))
}

// Health derives the copy's health from a stats snapshot at time now.
func (st WatcherStats) Health(now time.Time) Health {
	var h Health
	var why []string
	if !st.Connected && !st.LastContact.IsZero() {
		h.CopyAge = now.Sub(st.LastContact)
		why = append(why, fmt.Sprintf("registry unreachable for %s; serving the last copy (%d origins)",
			h.CopyAge.Round(100*time.Millisecond), st.Origins))
	}
	if st.Overdue > 0 {
		if age := now.Sub(st.OverdueSince); age > h.CopyAge {
			h.CopyAge = age
		}
		if st.MassHeld > 0 {
			why = append(why, fmt.Sprintf("%d of %d origins vanished from Redis at once; keeping the last copy", st.MassHeld, st.Origins))
		}
		if n := st.Overdue - st.MassHeld; n > 0 {
			why = append(why, fmt.Sprintf("%d origins overdue and kept because Redis could not confirm them gone", n))
		}
	}
	if len(why) > 0 {
		h.Degraded = true
		h.Reason = strings.Join(why, "; ")
	}
	return h
}

// Watcher keeps a Sink in step with the registry: snapshot, then pub/sub events.
type Watcher struct {
	c    redis.UniversalClient
	ks   keyspace
	sg   signer
	key  string
	sink Sink
	ae   time.Duration
	hold time.Duration
	skew time.Duration
	now  func() time.Time
	log  *slog.Logger

	held     map[string]*heldOrigin // owned by the Run goroutine
	staleMu  sync.Mutex
	staleLog map[string]time.Time // when a stale value of an origin was last logged; snapshot workers verify in parallel, so under staleMu
	mass     bool                 // a mass-expiry episode is under way; owned by the Run goroutine
	lastMass time.Time            // when most of the view last read as vanished; owned by the Run goroutine

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

	// Past the deadline: when to ask Redis again, whether a failed read was counted, and
	// since when the origin is held as part of a mass expiry.
	checkAt     time.Time
	unread      bool
	massSince   time.Time
	settleSince time.Time // confirmed gone while others were late: judged again after half a TTL
	rereadAt    time.Time // no re-read before this, after one failed
}

// alive clears what an overdue origin carried, on proof of life.
func (h *heldOrigin) alive() {
	h.unread, h.massSince, h.settleSince, h.checkAt = false, time.Time{}, time.Time{}, time.Time{}
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
	if o.MassExpiryHold <= 0 {
		o.MassExpiryHold = 30 * time.Second
	}
	sg := newSigner(clusterKey)
	return &Watcher{
		c: c, ks: keyspace{sg.ns}, sg: sg, key: clusterKey, sink: sink,
		ae: o.AntiEntropy, hold: o.MassExpiryHold, skew: max(o.MaxClockSkew, 0), now: o.Now,
		log:  o.Logger.With("component", "watcher", "namespace", sg.ns),
		held: map[string]*heldOrigin{}, staleLog: map[string]time.Time{},
	}
}

// Ready reports whether a first full snapshot reached the Sink; it stays true while Redis is away.
func (w *Watcher) Ready() bool { return w.ready.Load() }

// Health is the served copy's health now; see WatcherStats.Health.
func (w *Watcher) Health() Health { return w.Stats().Health(w.now()) }

// CheckReady is a gateway's readiness: an error before the first snapshot, and, when
// maxStaleness is positive, once the copy has gone unconfirmed for longer than that.
// A degraded copy younger than maxStaleness is still ready (see Health for the note).
func (w *Watcher) CheckReady(maxStaleness time.Duration) error {
	if !w.Ready() {
		return errors.New("no registry snapshot yet")
	}
	if maxStaleness <= 0 {
		return nil
	}
	if h := w.Health(); h.Degraded && h.CopyAge > maxStaleness {
		return fmt.Errorf("registry copy unconfirmed for %s, longer than %s: %s",
			h.CopyAge.Round(100*time.Millisecond), maxStaleness, h.Reason)
	}
	return nil
}

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
		// A failed session often means a dead Cluster node: re-read the slot map now rather
		// than at go-redis's next periodic reload, so the next subscription finds the new master.
		reloadTopology(w.c)
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
			// Apply what is queued first: a slow read in this loop must not read as silence,
			// and no origin may expire past a heartbeat already received.
			for n := len(inbox); n > 0; n-- {
				if err := w.process(sctx, <-inbox); err != nil {
					return err
				}
				lastContact = time.Now()
			}
			quiet := time.Since(lastContact)
			if quiet > contactTimeout {
				return fmt.Errorf("no answer from Redis for %s", quiet.Round(time.Millisecond))
			}
			// A silent Redis is not proof the origins died: expire only on fresh contact.
			if quiet < expiryContact {
				w.expire(sctx)
			}
			w.noteOverdue()
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
	case received:
		w.handle(ctx, m.msg.Channel, m.msg.Payload, m.at)
	}
	w.count(func(s *WatcherStats) { s.LastContact = w.now() })
	return nil
}

// received is a channel message and when it arrived: its freshness is judged at arrival, so a
// backlog in this process does not make live origins' heartbeats look replayed.
type received struct {
	msg *redis.Message
	at  time.Time
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
		if msg, ok := m.(*redis.Message); ok {
			m = received{msg, w.now()}
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

// expire asks Redis about origins whose heartbeat deadline passed and drops only those whose
// record Redis positively reports gone. A failed read keeps the origin (the node holding its
// keys may be failing over), and most of the view vanishing at once is taken as registry
// trouble (a failover to a replica that lost the keys, a restart) rather than as deaths: the
// last copy is kept for MassExpiryHold and reported.
func (w *Watcher) expire(ctx context.Context) {
	now := w.now()
	var due []string
	for id, h := range w.held {
		if now.After(h.deadline) && !now.Before(h.checkAt) {
			due = append(due, id)
		}
	}
	if len(due) == 0 {
		return
	}
	type probe struct {
		id  string
		rec *redis.StringCmd
	}
	rctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	probes := make([]probe, 0, len(due))
	readAt := now
	_, _ = w.c.Pipelined(rctx, func(p redis.Pipeliner) error {
		for _, id := range due {
			probes = append(probes, probe{id, p.Get(rctx, w.ks.rec(id))})
		}
		return nil
	})
	now = w.now()
	gone := map[string]bool{}
	var reread []string
	for _, pr := range probes {
		h := w.held[pr.id]
		blob, err := pr.rec.Bytes()
		if err != nil && !errors.Is(err, redis.Nil) {
			h.checkAt = now.Add(recheckEvery)
			if !h.unread {
				h.unread = true
				w.count(func(s *WatcherStats) { s.KeptUnread++ })
				w.log.Warn("origin overdue but Redis cannot be asked; keeping it", "origin", pr.id, "err", err)
			}
			continue
		}
		var rec cluster.Origin
		if err != nil || w.sg.open(kindRecord, pr.id, blob, &rec) != nil || rec.ID != pr.id || rec.Validate() != nil {
			gone[pr.id] = true
			continue
		}
		// A stale record (a replay, or the last one of a process that died) or one of an older
		// run proves nothing: as good as none.
		deadline, ferr := w.fresh(rec, readAt)
		if ferr != nil || rec.Epoch < h.epoch {
			gone[pr.id] = true
			continue
		}
		// Alive in Redis, only its heartbeats did not reach us (the channel's node may be failing
		// over, or we are slow). A newer list version comes with its delta or next heartbeat:
		// this read is about liveness, and re-reading a big list here would only add to the load.
		if rec.Epoch != h.epoch {
			reread = append(reread, pr.id)
			continue
		}
		h.deadline = deadline
		h.alive()
	}
	for _, id := range reread {
		w.reread(ctx, id)
		if h := w.held[id]; h != nil {
			h.checkAt = now.Add(recheckEvery)
		}
	}
	if len(gone) == 0 {
		return
	}
	// Troubled: confirmed gone or overdue. Late (no word for half a TTL) others make a death
	// suspect: it settles for half a TTL first, so origins that lost Redis together, whose
	// deadlines differ by up to a heartbeat, are judged together.
	troubled, suspect := 0, false
	for id, h := range w.held {
		switch {
		case gone[id] || now.After(h.deadline):
			troubled++
		case now.After(h.deadline.Add(-h.ttl / 2)):
			suspect = true
		}
	}
	mass := troubled >= massMin && 2*troubled > len(w.held)
	if mass {
		w.lastMass = now
	}
	for id := range gone {
		h := w.held[id]
		// Held while the episode lasts, and a grace after it: as the registry recovers the
		// others come back first, and a straggler still rewriting must not then read as a death.
		inEpisode := mass || (!h.massSince.IsZero() && now.Sub(w.lastMass) < massGrace)
		if inEpisode && (h.massSince.IsZero() || now.Sub(h.massSince) < w.hold) {
			if h.massSince.IsZero() {
				h.massSince = now
			}
			h.checkAt = now.Add(recheckEvery)
			continue
		}
		if suspect && (h.settleSince.IsZero() || now.Sub(h.settleSince) < h.ttl/2) {
			if h.settleSince.IsZero() {
				h.settleSince = now
			}
			h.checkAt = now.Add(min(recheckEvery, h.ttl/4))
			continue
		}
		delete(w.held, id)
		// Counted before the Sink changes, so whoever sees the origin gone also sees why.
		w.count(func(s *WatcherStats) { s.Expired++; s.Origins = len(w.held) })
		w.sink.DropOrigin(id)
		w.log.Info("origin expired", "origin", id)
	}
	if mass && !w.mass {
		w.mass = true
		w.count(func(s *WatcherStats) { s.MassExpiries++ })
		w.log.Warn("most origins vanished from Redis at once; keeping the last copy",
			"vanished", troubled, "held", len(w.held), "hold", w.hold)
	}
}

// noteOverdue publishes which held origins are past their deadline, for Health.
func (w *Watcher) noteOverdue() {
	now := w.now()
	var n, massHeld int
	var since time.Time
	for _, h := range w.held {
		if !h.massSince.IsZero() {
			massHeld++
		}
		if now.After(h.deadline) {
			n++
			if since.IsZero() || h.deadline.Before(since) {
				since = h.deadline
			}
		}
	}
	if massHeld == 0 && w.mass {
		w.mass = false
		w.log.Info("mass expiry over")
	}
	w.count(func(s *WatcherStats) { s.Overdue, s.OverdueSince, s.MassHeld = n, since, massHeld })
}

// fetched is one origin as read from Redis, before verification.
type fetched struct {
	id      string
	at      time.Time // when the read was sent; freshness is judged then
	rec     *redis.StringCmd
	streams *redis.MapStringStringCmd
}

// err is the first real failure among the fetch's reads; a missing key is not one.
func (f fetched) err() error {
	for _, err := range []error{f.rec.Err(), f.streams.Err()} {
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
}

func (w *Watcher) queueFetch(ctx context.Context, p redis.Pipeliner, id string) fetched {
	return fetched{
		id:      id,
		at:      w.now(),
		rec:     p.Get(ctx, w.ks.rec(id)), // before the list: the list is then at least as new
		streams: p.HGetAll(ctx, w.ks.streams(id)),
	}
}

// verify turns a fetch into a view and the deadline its record is trusted until; ok is false
// when the origin is absent, untrusted or stale.
func (w *Watcher) verify(f fetched) (OriginView, time.Time, bool) {
	return w.verifyWith(newEntryOpener(w.sg), f)
}

// verifyWith is verify checking the stream entries with op; safe for concurrent use with
// one op per goroutine.
func (w *Watcher) verifyWith(op *entryOpener, f fetched) (OriginView, time.Time, bool) {
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
	deadline, err := w.fresh(rec, f.at)
	if err != nil {
		w.reject(f.id, "record", err)
		return OriginView{}, time.Time{}, false
	}
	fields, _ := f.streams.Result()
	streams := make([]cluster.Stream, 0, len(fields))
	var bad int
	var firstErr error
	for name, blob := range fields {
		var s cluster.Stream
		err := op.openStream(f.id, []byte(blob), &s)
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
	return OriginView{Origin: rec, Streams: streams}, deadline, true
}

// errStale marks signed values dropped for their age or epoch: replays, or the last words of
// a process that is gone.
var errStale = errors.New("stale")

// fresh returns until when rec may be trusted: its signed issue time plus its TTL plus the
// allowed clock skew. It fails when that had passed at time now (when the record was read or
// received), and for a record issued further ahead than the skew (its deadline would outlive
// its TTL here).
func (w *Watcher) fresh(rec cluster.Origin, now time.Time) (time.Time, error) {
	if rec.IssuedMillis <= 0 {
		return time.Time{}, fmt.Errorf("%w: no issue time", errStale)
	}
	ttl := ttlOf(rec)
	issued := time.UnixMilli(rec.IssuedMillis)
	if issued.After(now.Add(w.skew)) {
		return time.Time{}, fmt.Errorf("%w: issued %s ahead of this clock (max clock skew %s)",
			errStale, issued.Sub(now).Round(time.Millisecond), w.skew)
	}
	deadline := issued.Add(ttl + w.skew)
	if now.After(deadline) {
		return time.Time{}, fmt.Errorf("%w: issued %s ago, past its TTL %s plus max clock skew %s",
			errStale, now.Sub(issued).Round(time.Millisecond), ttl, w.skew)
	}
	return deadline, nil
}

func validStream(s cluster.Stream, field string) error {
	if s.Name != field {
		return fmt.Errorf("stream entry %q stored under field %q", s.Name, field)
	}
	if s.State != cluster.StreamRunning && s.State != cluster.StreamOnDemand {
		return fmt.Errorf("stream %q: state %q is invalid", s.Name, s.State)
	}
	if s.Upstream != "" && (!cluster.ValidID(s.Upstream) || s.State != cluster.StreamRunning) {
		return fmt.Errorf("stream %q: relay upstream %q is invalid (a relay is a running stream pulled from a valid origin id)", s.Name, s.Upstream)
	}
	return nil
}

func (w *Watcher) countReject(err error) {
	w.count(func(s *WatcherStats) {
		switch {
		case errors.Is(err, ErrBadSignature):
			s.SignatureFailures++
		case errors.Is(err, errStale):
			s.StaleRecords++
		default:
			s.InvalidRecords++
		}
	})
}

func (w *Watcher) reject(id, what string, err error) {
	w.countReject(err)
	if errors.Is(err, errStale) && !w.logStale(id) {
		return
	}
	w.log.Warn("registry data dropped", "origin", id, "what", what, "err", err)
}

// resync reads every live origin and replaces the Sink's whole view.
func (w *Watcher) resync(ctx context.Context, reconnect bool) error {
	minScore := strconv.FormatInt(w.now().Add(-clockSkewGrace).UnixMilli(), 10)
	ids, err := w.c.ZRangeByScore(ctx, w.ks.origins(), &redis.ZRangeBy{Min: minScore, Max: "+inf"}).Result()
	if err != nil {
		return fmt.Errorf("snapshot index: %w", err)
	}
	held := make(map[string]*heldOrigin, len(ids))
	// Progressive: the Watcher holds nothing (a first snapshot, or every origin gone), so each
	// origin goes to the Sink as soon as it is verified rather than all at the end, and a
	// gateway can redirect to the origins loaded while the rest load (it must not answer "not
	// found" before Ready, which only a whole snapshot sets). A snapshot that fails half-way
	// takes back what it put: an origin no Watcher state tracks would never expire.
	progressive := len(w.held) == 0
	var put map[string]struct{}
	if progressive {
		put = map[string]struct{}{}
	}
	var views []OriginView
	var failed []string
	apply := func(l *loaded) {
		if l.err != nil {
			failed = append(failed, l.id)
			return
		}
		if !l.ok || w.olderRun(l.id, l.view.Origin.Epoch) {
			return
		}
		v := &l.view
		h := &heldOrigin{epoch: v.Origin.Epoch, ver: v.Origin.StreamsVer, deadline: l.deadline, ttl: ttlOf(v.Origin)}
		if old := w.held[l.id]; old != nil && old.epoch == h.epoch {
			h.seq = old.seq
		}
		held[l.id] = h
		if !progressive {
			views = append(views, *v)
			return
		}
		put[l.id] = struct{}{}
		w.sink.PutOrigin(v.Origin)
		w.sink.PutStreams(l.id, v.Streams)
	}
	// In a progressive snapshot a read that failed (a busy Redis, a big list on a loaded
	// machine) is tried again a few times: nothing is held for that origin, and missing from
	// the first snapshot it would read as "not found" until its next heartbeat brings it.
	// Otherwise the held copy stays, and the session's loop is not held up for it.
	err = w.loadOrigins(ctx, ids, apply)
	for attempt := 1; progressive && err == nil && len(failed) > 0 && attempt <= snapshotRetries; attempt++ {
		w.log.Warn("snapshot reads failed; reading those origins again", "origins", len(failed), "attempt", attempt)
		select {
		case <-ctx.Done():
			err = ctx.Err()
			continue
		case <-time.After(time.Duration(attempt) * backoffMin):
		}
		ids, failed = failed, nil
		err = w.loadOrigins(ctx, ids, apply)
	}
	if err == nil && len(failed) > 0 {
		// Not proof of anything: a held copy stays (below), a new origin comes with its next beat.
		w.log.Warn("snapshot read of origins failed; keeping what is held", "origins", len(failed), "first", failed[0])
	}
	if err != nil {
		for id := range put {
			w.sink.DropOrigin(id)
		}
		return err
	}
	if progressive {
		w.held = held
		w.ready.Store(true)
		w.count(func(s *WatcherStats) { s.Resyncs++; s.LastSync = w.now(); s.Origins = len(held) })
		return nil
	}
	// An origin we hold that the snapshot lacks is not proof it died: a Redis that restarted
	// empty has not yet been rewritten by its origins. Keep it until its deadline (extended by
	// at least reconnectGrace when this snapshot follows a reconnect, so its origin has time to
	// rewrite a failed-over or restarted Redis); only a bye or a confirmed expiry drops it.
	// Past its deadline such an origin is left to expire, which asks Redis once more and
	// tells a death from most of the view vanishing at once.
	now := w.now()
	var kept int
	for id, h := range w.held {
		if _, ok := held[id]; ok {
			continue
		}
		if reconnect {
			h.deadline = maxTime(h.deadline, now.Add(max(2*h.ttl, reconnectGrace)))
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
	if h := w.held[id]; h != nil && w.now().Before(h.rereadAt) {
		return // the last try failed a moment ago: do not hammer a failing node on every beat
	}
	var f fetched
	rctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	_, _ = w.c.Pipelined(rctx, func(p redis.Pipeliner) error {
		f = w.queueFetch(rctx, p, id)
		return nil
	})
	w.count(func(s *WatcherStats) { s.GapResyncs++ })
	if err := f.err(); err != nil {
		// Left as is; the next heartbeat, expiry check or anti-entropy repairs it.
		w.log.Warn("origin re-read failed", "origin", id, "err", err)
		if h := w.held[id]; h != nil {
			h.rereadAt = w.now().Add(recheckEvery)
		}
		return
	}
	v, deadline, ok := w.verify(f)
	if !ok || w.olderRun(id, v.Origin.Epoch) {
		// A missing or untrusted record is not proof the origin died (its node may have failed
		// over to a replica that lost the key): a held copy stays until Redis confirms it gone
		// after its deadline (expire), or a bye.
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
func (w *Watcher) handle(ctx context.Context, channel, payload string, at time.Time) {
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
		w.onBeat(ctx, ev.Origin, b, at)
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

func (w *Watcher) onBeat(ctx context.Context, id string, b beatBody, at time.Time) {
	rec := b.Rec
	if rec.ID != id {
		w.reject(id, "heartbeat", fmt.Errorf("record id %q in another origin's event", rec.ID))
		return
	}
	if err := rec.Validate(); err != nil {
		w.reject(id, "heartbeat", err)
		return
	}
	// Checked first: a replayed beat must cost no Redis read.
	deadline, err := w.fresh(rec, at)
	if err != nil {
		w.reject(id, "heartbeat", err)
		return
	}
	if w.olderRun(id, rec.Epoch) {
		return
	}
	h := w.held[id]
	if h != nil && h.epoch == rec.Epoch && b.Seq <= h.seq {
		return // older than what we applied
	}
	if h == nil || h.epoch != rec.Epoch || rec.StreamsVer > h.ver {
		w.reread(ctx, id)
		if h = w.held[id]; h != nil && h.epoch == rec.Epoch {
			// The beat itself proves the origin alive, whatever the re-read found.
			h.seq = b.Seq
			h.deadline = maxTime(h.deadline, deadline)
			h.alive()
		}
		return
	}
	h.seq = b.Seq
	h.deadline = deadline
	h.alive()
	w.sink.PutOrigin(rec)
}

func (w *Watcher) onDelta(ctx context.Context, id string, d deltaBody) {
	// Deltas are judged by epoch and version, not by age: one delivered late is no replay,
	// and a replayed one names a version already applied (or a dead origin's, which a re-read
	// finds gone). None extends an origin's life.
	h := w.held[id]
	if h != nil && d.Epoch < h.epoch {
		return
	}
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

// staleLogEvery bounds the lines about one origin's stale values: a replay repeats them many
// times a second, and one line (with the counter) tells the story.
const staleLogEvery = 10 * time.Second

// logStale reports whether a stale value of origin id may be logged now.
func (w *Watcher) logStale(id string) bool {
	w.staleMu.Lock()
	defer w.staleMu.Unlock()
	now := w.now()
	if last, ok := w.staleLog[id]; ok && now.Sub(last) < staleLogEvery {
		return false
	}
	if len(w.staleLog) >= 1024 {
		for k, t := range w.staleLog {
			if now.Sub(t) >= staleLogEvery {
				delete(w.staleLog, k)
			}
		}
		if len(w.staleLog) >= 1024 {
			return false
		}
	}
	w.staleLog[id] = now
	return true
}

// olderRun reports (and counts) a record of an epoch older than the one held for id: a value
// of the origin's previous run, replayed or late.
func (w *Watcher) olderRun(id string, epoch uint64) bool {
	h := w.held[id]
	if h == nil || epoch >= h.epoch {
		return false
	}
	w.count(func(s *WatcherStats) { s.StaleRecords++ })
	w.log.Debug("registry data of an older run ignored", "origin", id, "epoch", epoch, "held_epoch", h.epoch)
	return true
}

func ttlOf(o cluster.Origin) time.Duration { return time.Duration(o.TTLMillis) * time.Millisecond }

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
