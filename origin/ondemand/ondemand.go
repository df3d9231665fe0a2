// Package ondemand pulls configured sources (RTSP, RTMP, HLS) into the media table while they have viewers.
package ondemand

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/streamname"
)

// Source is one on-demand NAME and the URL it is pulled from.
type Source struct {
	Name string
	// URL is rtsp://, rtsps://, rtmp://, rtmps://, http:// or https:// (an HLS playlist).
	URL string
}

// Manager is the Table's media.Starter: the first viewer of a NAME starts its pull, which
// stops after IdleTimeout without viewers and is retried with backoff while viewers remain.
//
// A pull publishes into the Table that asked for it (Demand's argument), so the Manager is
// built first and needs no reference to the Table:
// m := &Manager{...}; tbl := media.NewTable(media.Config{Starter: m, ...}); m.Initialize();
// ... m.Close() before tbl.Close().
type Manager struct {
	// Sources are the on-demand NAMEs.
	Sources []Source
	// IdleTimeout stops a pull that had no viewer (and no start request) for this long. It defaults to 30 seconds.
	IdleTimeout time.Duration
	// RetryMin is the first pause before pulling again after the source dropped. It defaults to 1 second.
	RetryMin time.Duration
	// RetryMax caps the doubling pause. It defaults to 30 seconds.
	RetryMax time.Duration
	// Timeout bounds connecting and each read from the source. It defaults to 10 seconds.
	Timeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Cluster, when set, turns on cluster pull-through (relay.go): a NAME that is not
	// configured here but runs on another origin of the cluster is pulled from there.
	Cluster Cluster
	// Self is this origin's id; a relay never pulls from it. Required with Cluster.
	Self string
	// MaxRelayDepth bounds relay chains (see ChooseUpstream). It defaults to DefaultMaxRelayDepth.
	MaxRelayDepth int
	// RelayGrace is how long a relay copy whose upstream dropped keeps its stream, and its
	// viewers, waiting for the pull from another copy to continue it (handover.go). It
	// defaults to 5 seconds; negative turns the handover off (the stream ends at once).
	RelayGrace time.Duration
	// PlayToken, when set, returns the query ("token=...") a relay pull presents to its
	// upstream for name (origins that check play tokens share auth.play_secret). Called for
	// every attempt, so the token is fresh; it is never logged.
	PlayToken func(name string) string

	srcs     map[string]Source
	missing  map[string]time.Time     // NAMEs the cluster did not run, until when; guarded by mu
	inflight map[string]chan struct{} // relay lookups under way, closed when done; guarded by mu
	lookups  chan struct{}            // registry lookups in flight

	mu      sync.Mutex
	pulls   map[string]*pull
	started bool
	closed  bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ media.Starter = (*Manager)(nil)

// pull is the running (or retrying) pull of one NAME.
type pull struct {
	src    Source
	tbl    *media.Table // receives the pulled stream
	demand time.Time    // last start request or moment with viewers; guarded by Manager.mu
	cancel context.CancelFunc
	live   bool // guarded by Manager.mu: the stream is published

	relay    bool   // a cluster pull-through copy (src.URL is the upstream's)
	upstream string // the upstream origin's id; guarded by Manager.mu
	held     *held  // a relay stream waiting for its next upstream (handover.go); guarded by Manager.mu
}

// errIdle ends a pull that lost its viewers.
var errIdle = errors.New("ondemand: idle")

// errNoTracks ends a pull whose source gave no tracks in time (some clients wait forever).
var errNoTracks = errors.New("ondemand: no tracks from the source in time")

// Initialize checks the sources; Start works only after it.
func (m *Manager) Initialize() error {
	if m.IdleTimeout <= 0 {
		m.IdleTimeout = 30 * time.Second
	}
	if m.RetryMin <= 0 {
		m.RetryMin = time.Second
	}
	if m.RetryMax <= 0 {
		m.RetryMax = 30 * time.Second
	}
	m.RetryMax = max(m.RetryMax, m.RetryMin)
	if m.Timeout <= 0 {
		m.Timeout = 10 * time.Second
	}
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	if m.RelayGrace == 0 {
		m.RelayGrace = DefaultRelayGrace
	}
	if m.MaxRelayDepth <= 0 {
		m.MaxRelayDepth = DefaultMaxRelayDepth
	}
	if m.Cluster != nil && !cluster.ValidID(m.Self) {
		return fmt.Errorf("ondemand: cluster pull-through needs this origin's id, got %q", m.Self)
	}
	m.missing = map[string]time.Time{}
	m.inflight = map[string]chan struct{}{}
	m.lookups = make(chan struct{}, lookupsMax)
	m.srcs = map[string]Source{}
	for _, s := range m.Sources {
		if err := ValidateSource(s); err != nil {
			return err
		}
		if _, dup := m.srcs[s.Name]; dup {
			return fmt.Errorf("ondemand: stream %q configured twice", s.Name)
		}
		m.srcs[s.Name] = s
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.mu.Lock()
	m.pulls = map[string]*pull{}
	m.started = true
	m.mu.Unlock()
	return nil
}

// ValidateSource checks a NAME and its source URL (config validation uses it too).
func ValidateSource(s Source) error {
	if !streamname.Valid(s.Name) {
		return fmt.Errorf("ondemand: stream name %q is invalid", s.Name)
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		return fmt.Errorf("ondemand: stream %q: source: %w", s.Name, err)
	}
	switch u.Scheme {
	case "rtsp", "rtsps", "rtmp", "rtmps", "http", "https":
	default:
		return fmt.Errorf("ondemand: stream %q: source scheme %q must be rtsp, rtsps, rtmp, rtmps, http or https", s.Name, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("ondemand: stream %q: source %q has no host", s.Name, s.URL)
	}
	return nil
}

// Names lists the on-demand NAMEs, sorted.
func (m *Manager) Names() []string {
	out := make([]string, 0, len(m.Sources))
	for _, s := range m.Sources {
		out = append(out, s.Name)
	}
	sort.Strings(out)
	return out
}

// Has reports whether name is an on-demand NAME.
func (m *Manager) Has(name string) bool {
	_, ok := m.srcs[name]
	return ok
}

// Streams is the registry entry of every on-demand NAME while nothing pulls it.
func (m *Manager) Streams() []cluster.Stream {
	names := m.Names()
	out := make([]cluster.Stream, len(names))
	for i, n := range names {
		out[i] = cluster.Stream{Name: n, State: cluster.StreamOnDemand}
	}
	return out
}

// Pulling reports whether a pull of name is running or retrying.
func (m *Manager) Pulling(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pulls[name] != nil
}

// Demand is media.Starter: it starts the pull of an on-demand NAME into tbl (or notes the
// demand on a running one) and reports whether name is on-demand.
func (m *Manager) Demand(tbl *media.Table, name string) bool {
	src, ok := m.srcs[name]
	if !ok {
		return m.demandRelay(tbl, name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started || m.closed {
		return false
	}
	if p := m.pulls[name]; p != nil {
		p.demand = time.Now()
		return true
	}
	p := &pull{src: src, tbl: tbl, demand: time.Now()}
	m.pulls[name] = p
	m.wg.Add(1)
	go m.run(p)
	return true
}

// Close stops every pull (their streams end) and returns when all are down.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed || !m.started {
		m.closed = true
		m.mu.Unlock()
		return
	}
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}

// run pulls p until it is idle, retrying with backoff while there is demand.
func (m *Manager) run(p *pull) {
	defer m.wg.Done()
	defer m.endHold(p, "pull stopped")
	log := m.Logger.With("stream", p.src.Name, "source", redact(p.src.URL))
	if p.relay {
		log = m.Logger.With("stream", p.src.Name, "relay_from", p.upstream, "source", redact(p.src.URL))
	}
	backoff := m.RetryMin
	failed := "" // a relay's upstream whose pull just failed
	for attempt := 0; ; attempt++ {
		began := time.Now()
		var err error
		if p.relay && attempt > 0 {
			// The upstream may be gone or full: ask the registry again.
			if err = m.reresolve(p, failed); err == nil {
				log = m.Logger.With("stream", p.src.Name, "relay_from", p.upstream, "source", redact(p.src.URL))
			}
		}
		if err == nil {
			err = m.pullOnce(p, log)
			failed = ""
			if p.relay && err != nil && !errors.Is(err, errIdle) {
				failed = m.upstreamOf(p)
			}
		}
		if m.ctx.Err() != nil {
			m.finish(p)
			return
		}
		if errors.Is(err, errIdle) {
			log.Info("on-demand pull stopped", "reason", "idle")
			if m.finishIfIdle(p) {
				return
			}
			continue // a viewer arrived while stopping: start again at once
		}
		if time.Since(began) > m.RetryMax {
			backoff = m.RetryMin // it ran fine for a while: a fresh failure
		}
		if errors.Is(err, errStreamGone) || m.handingOver(p) {
			// The stream waits for another upstream (its viewers with it), or just ended
			// because none came in time: pull again at once.
			log.Warn("on-demand pull failed", "err", err, "retry_in", time.Duration(0))
			if m.finishIfIdle(p) {
				log.Info("on-demand pull given up", "reason", "no viewers")
				return
			}
			continue
		}
		log.Warn("on-demand pull failed", "err", err, "retry_in", backoff)
		select {
		case <-m.ctx.Done():
			m.finish(p)
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, m.RetryMax)
		if m.finishIfIdle(p) {
			log.Info("on-demand pull given up", "reason", "no viewers")
			return
		}
	}
}

// finishIfIdle removes p when nobody asked for it within IdleTimeout; under the lock, so a
// concurrent Start either sees p gone (and starts anew) or refreshes its demand in time.
func (m *Manager) finishIfIdle(p *pull) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if time.Since(p.demand) < m.IdleTimeout && !m.closed {
		return false
	}
	delete(m.pulls, p.src.Name)
	return true
}

func (m *Manager) finish(p *pull) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pulls[p.src.Name] == p {
		delete(m.pulls, p.src.Name)
	}
}

func (m *Manager) touch(p *pull) {
	m.mu.Lock()
	p.demand = time.Now()
	m.mu.Unlock()
}

func (m *Manager) idleFor(p *pull) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return time.Since(p.demand)
}

// pullOnce connects, publishes and pumps until the source drops, ctx ends or the stream is idle.
func (m *Manager) pullOnce(p *pull, log *slog.Logger) error {
	ctx, cancel := context.WithCancelCause(m.ctx)
	defer cancel(nil)
	u, err := url.Parse(p.src.URL)
	if err != nil {
		return err
	}
	if p.relay && m.PlayToken != nil {
		u.RawQuery = m.PlayToken(p.src.Name)
	}
	var pl puller
	switch u.Scheme {
	case "rtsp", "rtsps":
		pl = &rtspPuller{}
	case "rtmp", "rtmps":
		pl = &rtmpPuller{}
	default:
		pl = &hlsPuller{}
	}
	// The puller calls pub once it knows the tracks; the idle watch starts then.
	var st *media.Stream
	var sp *media.Splice // set when this attempt continues a held relay stream
	var h *held          // the hold sp continues
	var watch sync.WaitGroup
	defer watch.Wait()
	var published atomic.Bool
	// Connecting and learning the tracks is bounded: gohlslib's client, for one, hangs when
	// its first segment fails.
	startBound := time.AfterFunc(2*m.Timeout, func() {
		if !published.Load() {
			cancel(errNoTracks)
		}
	})
	defer startBound.Stop()
	started := func(s *media.Stream) {
		published.Store(true)
		st = s
		watch.Add(1)
		go func() {
			defer watch.Done()
			m.watchIdle(ctx, cancel, p, s)
		}()
	}
	pub := &publisher{
		publish: func(tracks []*media.Track) (*media.Stream, error) {
			m.endHold(p, "new upstream not relayed over RTSP")
			s, err := p.tbl.Publish(p.src.Name, tracks)
			if err != nil {
				return nil, err
			}
			log.Info("on-demand pull running", "codecs", s.Meta().Codecs)
			started(s)
			return s, nil
		},
	}
	pub.clocked = func(tracks []*media.Track) (unitWriter, error) {
		if hh, sc := m.continueHold(p, tracks, log); sc != nil {
			h, sp = hh, sc
			started(sc.Stream())
			watch.Add(1)
			go func() {
				defer watch.Done()
				select {
				case <-sc.Resumed():
					seam := sc.Seam()
					log.Info("relay stream continued", "gap", time.Since(hh.since).Round(time.Millisecond),
						"seamless", seam.Continued, "skipped", seam.Skipped, "repeated_units", seam.Dropped)
				case <-ctx.Done():
				}
			}()
			return sc, nil
		}
		return pub.publish(tracks)
	}
	err = pl.run(ctx, u, m.Timeout, pub)
	cancel(nil)
	cause := context.Cause(ctx)
	// A relay keeps its stream for the next upstream (handover.go) unless the pull ended for
	// a reason of its own.
	keep := p.relay && m.ctx.Err() == nil && !errors.Is(cause, errIdle) && !errors.Is(cause, errStreamGone)
	switch {
	case st == nil:
	case sp != nil:
		m.afterContinue(p, h, sp, keep, err, log)
	case keep:
		m.hold(p, st, err, log)
	default:
		st.Close() // the Table reports StreamStopped: the registry shows ondemand again
	}
	switch {
	case errors.Is(cause, errIdle):
		return errIdle
	case errors.Is(cause, errNoTracks):
		return errNoTracks
	case errors.Is(cause, errStreamGone):
		return errStreamGone
	}
	if err == nil {
		err = errors.New("source ended")
	}
	return err
}

// watchIdle ends the pull once the stream had no viewer and no start request for IdleTimeout.
func (m *Manager) watchIdle(ctx context.Context, cancel context.CancelCauseFunc, p *pull, st *media.Stream) {
	every := max(min(m.IdleTimeout/4, time.Second), 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	watched := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.Done():
			// Ended under the pull: a held relay stream whose grace ran out (handover.go).
			cancel(errStreamGone)
			return
		case <-t.C:
		}
		if st.Viewers() > 0 {
			m.touch(p)
			watched = true
			continue
		}
		if watched {
			// The last viewer left since the previous tick: count the idle time from now, so a
			// pull never stops before IdleTimeout has passed since the viewer left (at most one
			// tick after).
			m.touch(p)
			watched = false
			continue
		}
		if m.idleFor(p) >= m.IdleTimeout {
			cancel(errIdle)
			return
		}
	}
}

// puller speaks one source protocol: connect, learn tracks, publish, write units until error or ctx.
type puller interface {
	run(ctx context.Context, u *url.URL, timeout time.Duration, pub *publisher) error
}

// publisher is how a puller starts its output once it knows the tracks.
type publisher struct {
	// publish starts a new stream (a held relay stream ends first).
	publish func([]*media.Track) (*media.Stream, error)
	// clocked is for a source that carries the source's clock (RTSP sender reports): it
	// continues a held relay stream when the tracks match it, and publishes otherwise.
	clocked func([]*media.Track) (unitWriter, error)
}

// unitWriter takes a puller's units: a *media.Stream or a *media.Splice.
type unitWriter interface {
	WriteUnit(media.Unit)
	AwaitSourceClock(time.Duration)
}

// redact drops credentials from a URL for logs.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = url.User("xxx")
	return u.String()
}
