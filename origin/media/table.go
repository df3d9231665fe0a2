package media

import (
	"context"
	"sync"
	"time"

	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/streamname"
)

// Events receives stream transitions (the registry's stream book, the HTTP server's eager HLS
// muxers). Calls come in order from one goroutine owned by the Table.
type Events interface {
	// StreamRunning: first key frame arrived, or the metadata (bitrate) changed notably.
	StreamRunning(name string, meta cluster.StreamMeta)
	// StreamStopped: the publisher of a stream announced as running left.
	StreamStopped(name string)
}

// Starter starts on-demand sources. The Table passes itself, so a Starter is built before the
// Table without a reference to it.
type Starter interface {
	// Demand reports whether a source for name exists and was asked to start publishing
	// into t (idempotent).
	Demand(t *Table, name string) bool
}

// Config tunes a Table; the zero value works.
type Config struct {
	// Starter starts on-demand sources for unknown names. Optional.
	Starter Starter
	// StartTimeout bounds how long a reader waits for an on-demand publisher. It defaults to 10 seconds.
	StartTimeout time.Duration
	// GOPCacheBytes bounds the per-stream GOP cache. It defaults to 8 MiB.
	GOPCacheBytes int
	// MaxReaders caps readers per stream. It defaults to 4096.
	MaxReaders int
	// MaxViewers caps viewers per stream over all protocols (Stream.TryJoin). It defaults to 4096.
	MaxViewers int
	// MetaInterval is how often the bitrate is measured. It defaults to 5 seconds.
	MetaInterval time.Duration
}

// Table is the set of live streams of one origin.
type Table struct {
	cfg Config

	mu      sync.Mutex
	streams map[string]*Stream       // claimed or published
	waiters map[string]chan struct{} // closed when the name gets tracks
	closed  bool

	meters meters

	evMu     sync.Mutex
	evTo     []Events // added by Notify; guarded by evMu
	evQueue  []event
	evSignal chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type event struct {
	name    string
	running bool
	meta    cluster.StreamMeta
}

// NewTable starts a Table; Close stops it.
func NewTable(cfg Config) *Table {
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.GOPCacheBytes <= 0 {
		cfg.GOPCacheBytes = 8 << 20
	}
	if cfg.MaxReaders <= 0 {
		cfg.MaxReaders = 4096
	}
	if cfg.MaxViewers <= 0 {
		cfg.MaxViewers = 4096
	}
	if cfg.MetaInterval <= 0 {
		cfg.MetaInterval = 5 * time.Second
	}
	t := &Table{
		cfg:      cfg,
		streams:  map[string]*Stream{},
		waiters:  map[string]chan struct{}{},
		evSignal: make(chan struct{}, 1),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.wg.Add(1)
	go t.run()
	return t
}

// Close ends every stream (readers get io.EOF, Events get StreamStopped) and stops the event goroutine.
func (t *Table) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	var all []*Stream
	for _, s := range t.streams {
		all = append(all, s)
	}
	for _, w := range t.waiters {
		close(w)
	}
	t.waiters = map[string]chan struct{}{}
	t.mu.Unlock()
	for _, s := range all {
		s.Close()
	}
	t.cancel()
	t.wg.Wait()
}

// Claim reserves name for a publisher that learns its tracks later; readers do not see it yet.
func (t *Table) Claim(name string) (*Claim, error) {
	if !streamname.Valid(name) {
		return nil, ErrInvalidName
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrTableClosed
	}
	if _, ok := t.streams[name]; ok {
		return nil, ErrAlreadyPublishing
	}
	s := newStream(t, name)
	t.streams[name] = s
	return &Claim{s: s}, nil
}

// Publish claims name and starts the stream with tracks (unsupported tracks are dropped).
func (t *Table) Publish(name string, tracks []*Track) (*Stream, error) {
	c, err := t.Claim(name)
	if err != nil {
		return nil, err
	}
	s, err := c.Publish(tracks)
	if err != nil {
		c.Release()
		return nil, err
	}
	return s, nil
}

// Live reports whether name is claimed or published (a publisher would be refused).
func (t *Table) Live(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.streams[name]
	return ok
}

// Get returns the published stream of name, or nil; it never waits.
func (t *Table) Get(name string) *Stream {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.streams[name]; s != nil && s.ready {
		return s
	}
	return nil
}

// Names lists the published streams.
func (t *Table) Names() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.streams))
	for n, s := range t.streams {
		if s.ready {
			out = append(out, n)
		}
	}
	return out
}

// Find returns the published stream of name; for a name the Starter accepts, or one a
// publisher has claimed but not published yet, it waits up to Config.StartTimeout (or ctx)
// for the tracks. ErrNotFound otherwise.
func (t *Table) Find(ctx context.Context, name string) (*Stream, error) {
	if !streamname.Valid(name) {
		return nil, ErrNotFound
	}
	t.mu.Lock()
	s, claimed := t.streams[name]
	t.mu.Unlock()
	if s != nil && s.ready {
		return s, nil
	}
	var timer *time.Timer
	for {
		// A claimed NAME has a publisher that is still announcing its tracks (RTMP takes about
		// 2 s): wait for it as for an on-demand start. Asked again after every wake-up, so a
		// released claim ends the wait.
		if !claimed && (t.cfg.Starter == nil || !t.cfg.Starter.Demand(t, name)) {
			return nil, ErrNotFound
		}
		if timer == nil {
			timer = time.NewTimer(t.cfg.StartTimeout)
			defer timer.Stop()
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, ErrTableClosed
		}
		s, nowClaimed := t.streams[name]
		if s != nil && s.ready {
			t.mu.Unlock()
			return s, nil
		}
		if claimed && !nowClaimed {
			t.mu.Unlock()
			claimed = false // released meanwhile: only an on-demand source can still bring it
			continue
		}
		claimed = nowClaimed
		w := t.waiters[name]
		if w == nil {
			w = make(chan struct{})
			t.waiters[name] = w
		}
		t.mu.Unlock()
		select {
		case <-w:
		case <-timer.C:
			return nil, ErrNotFound
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Subscribe is Find followed by Stream.AddReader.
func (t *Table) Subscribe(ctx context.Context, name string, opts ReaderOptions) (*Stream, *Reader, error) {
	s, err := t.Find(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	r, err := s.AddReader(opts)
	if err != nil {
		return nil, nil, err
	}
	return s, r, nil
}

// markReady wakes readers waiting for name.
func (t *Table) markReady(s *Stream) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.ready = true
	if w := t.waiters[s.name]; w != nil {
		close(w)
		delete(t.waiters, s.name)
	}
}

func (t *Table) remove(s *Stream) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.streams[s.name] == s {
		delete(t.streams, s.name)
		// Readers waiting for this NAME re-check: a released claim must not keep them waiting.
		if w := t.waiters[s.name]; w != nil {
			close(w)
			delete(t.waiters, s.name)
		}
	}
}

// Notify adds a receiver of the Table's events: it gets every event delivered after the call,
// in order with the other receivers. It is how parts built on the Table follow it (the
// stream book, the HTTP server's eager muxers); add them before anything can publish.
func (t *Table) Notify(e Events) {
	t.evMu.Lock()
	defer t.evMu.Unlock()
	t.evTo = append(t.evTo, e)
}

// emit queues an event; callers hold the stream's lock so events of one stream stay ordered.
func (t *Table) emit(e event) {
	t.evMu.Lock()
	t.evQueue = append(t.evQueue, e)
	t.evMu.Unlock()
	select {
	case t.evSignal <- struct{}{}:
	default:
	}
}

// run delivers events and refreshes bitrates until Close.
func (t *Table) run() {
	defer t.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			t.deliver() // StreamStopped of streams ended by Close
			return
		case <-t.evSignal:
			t.deliver()
		case now := <-tick.C:
			t.mu.Lock()
			all := make([]*Stream, 0, len(t.streams))
			for _, s := range t.streams {
				all = append(all, s)
			}
			t.mu.Unlock()
			for _, s := range all {
				s.measure(now)
			}
			t.deliver()
		}
	}
}

func (t *Table) deliver() {
	t.evMu.Lock()
	q, to := t.evQueue, t.evTo
	t.evQueue = nil
	t.evMu.Unlock()
	for _, e := range q {
		for _, r := range to {
			if e.running {
				r.StreamRunning(e.name, e.meta)
			} else {
				r.StreamStopped(e.name)
			}
		}
	}
}

// Claim is a reserved NAME without tracks yet.
type Claim struct {
	s    *Stream
	once sync.Once
	done bool
}

// Name is the claimed NAME.
func (c *Claim) Name() string { return c.s.name }

// Publish starts the stream with tracks; unsupported tracks are dropped, none left is ErrNoTracks.
func (c *Claim) Publish(tracks []*Track) (*Stream, error) {
	var ok []*Track
	for _, tr := range tracks {
		if tr != nil && Supported(tr.Format) {
			ok = append(ok, tr)
		}
	}
	if len(ok) == 0 {
		return nil, ErrNoTracks
	}
	s := c.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrStreamClosed
	}
	s.setTracks(ok)
	s.mu.Unlock()
	c.done = true
	s.t.markReady(s)
	return s, nil
}

// Release gives the NAME back if Publish was not called (or failed); harmless otherwise.
func (c *Claim) Release() {
	if c.done {
		return
	}
	c.once.Do(c.s.Close)
}
