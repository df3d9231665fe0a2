package ondemand

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/streamname"
)

// Cluster pull-through: a viewer asks this origin for a NAME it neither publishes nor has
// configured, because the gateway spilled the viewer here (balance.spill_at). The Manager
// looks NAME up in the registry, picks the upstream origin with ChooseUpstream and pulls NAME
// from it over RTSP (RTMP when the upstream offers no RTSP), at the upstream's private
// address. The pull is an ordinary on-demand pull: one per NAME however many viewers it
// serves, stopped IdleTimeout after the last viewer left, retried while viewers remain (each
// retry looks the upstream up again, so a relay follows its stream to a new upstream).
//
// When the upstream dies (a relay killed, an owner gone), the registry still lists it until
// its heartbeat TTL runs out. The retry after a failed pull therefore avoids the upstream
// that just failed whenever another origin runs the stream: a relay of a dead relay moves to
// a live copy at its first retry rather than hammering the dead one for a TTL.

// Cluster finds the origins of the cluster that run a NAME (registry.Finder in production).
type Cluster interface {
	FindStream(ctx context.Context, name string) ([]cluster.Carrier, error)
}

// DefaultMaxRelayDepth bounds relay chains: a relay pulls from an owner (depth 1), a relay
// of a relay from a depth-1 relay (depth 2), and so on up to this.
const DefaultMaxRelayDepth = 3

const (
	// missingTTL is how long a NAME the cluster does not run is answered "not found" without
	// asking the registry again; missingMax bounds that memory (it is cleared when full).
	missingTTL = time.Second
	missingMax = 4096
	// lookupsMax bounds registry lookups in flight: unknown names must not flood Redis.
	lookupsMax = 8
	// lookupTimeout bounds one lookup; a viewer waits for it.
	lookupTimeout = 2 * time.Second
)

// errNoUpstream fails a relay attempt when no origin of the cluster can serve the NAME.
var errNoUpstream = errors.New("no origin of the cluster runs the stream")

// Upstream is where a relay pulls from.
type Upstream struct {
	ID    string // origin id
	URL   string // source URL: the origin's private RTSP (or RTMP) base URL and the NAME
	Depth int    // depth of the relay pulling from it: 1 for an owner
}

// ChooseUpstream picks the origin that origin self pulls name from, among the carriers of
// name (FindStream's answer). The rules, in order:
//
//   - never self, never an origin without an RTSP or RTMP URL;
//   - no cycles: never a relay whose chain of upstreams reaches self (it pulls from us, at
//     some remove), nor one whose chain is broken (an upstream not listed) or loops;
//   - depth bounded: never a relay at maxDepth (its relay would be deeper);
//   - owners before relays while some owner is not full (capacity); relays (shallowest
//     first) when every owner is full; full ones last (a pull is one client: it beats none);
//   - up before draining; then least utilized; then by id, so every relay of one NAME agrees.
func ChooseUpstream(carriers []cluster.Carrier, self, name string, maxDepth int) (Upstream, bool) {
	return chooseUpstream(carriers, self, name, maxDepth, "")
}

// chooseUpstream is ChooseUpstream that takes the origin avoid only when no other one
// qualifies (avoid: the upstream whose pull just failed; "" avoids none).
func chooseUpstream(carriers []cluster.Carrier, self, name string, maxDepth int, avoid string) (Upstream, bool) {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxRelayDepth
	}
	byID := make(map[string]*cluster.Carrier, len(carriers))
	for i := range carriers {
		byID[carriers[i].Origin.ID] = &carriers[i]
	}
	// depth of a carrier's copy: 0 for an owner; -1 when unusable (cycle through self, loop, broken chain).
	depth := func(c *cluster.Carrier) int {
		d := 0
		for c.Stream.Upstream != "" {
			if c.Origin.ID == self || d > len(carriers) {
				return -1
			}
			next := byID[c.Stream.Upstream]
			if next == nil {
				return -1
			}
			c, d = next, d+1
		}
		if c.Origin.ID == self {
			return -1
		}
		return d
	}
	type cand struct {
		up       Upstream
		avoided  bool
		class    int // 0 owner not full, 1 relay not full, 2 owner full, 3 relay full
		draining bool
		util     float64
	}
	var cands []cand
	for i := range carriers {
		c := &carriers[i]
		if c.Origin.ID == self || c.Stream.State != cluster.StreamRunning {
			continue
		}
		d := depth(c)
		if d < 0 || d+1 > maxDepth {
			continue
		}
		base := c.Origin.DialURL("rtsp")
		if base == "" {
			base = c.Origin.DialURL("rtmp")
		}
		if base == "" {
			continue
		}
		l, cp := c.Origin.Load, c.Origin.Capacity
		full := cp.Full(l)
		class := 0
		if d > 0 {
			class = 1
		}
		if full {
			class += 2
		}
		cands = append(cands, cand{
			up:      Upstream{ID: c.Origin.ID, URL: base + "/" + name, Depth: d + 1},
			avoided: avoid != "" && c.Origin.ID == avoid,
			class:   class, draining: c.Origin.State != cluster.StateUp, util: cp.Utilization(l),
		})
	}
	if len(cands) == 0 {
		return Upstream{}, false
	}
	best := slices.MinFunc(cands, func(a, b cand) int {
		return cmp.Or(compareBool(a.avoided, b.avoided), cmp.Compare(a.class, b.class), compareBool(a.draining, b.draining),
			cmp.Compare(a.up.Depth, b.up.Depth), cmp.Compare(a.util, b.util), cmp.Compare(a.up.ID, b.up.ID))
	})
	return best.up, true
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// findUpstream asks the cluster for name's upstream, bounded in time and in lookups in flight;
// avoid as for chooseUpstream.
func (m *Manager) findUpstream(name, avoid string) (Upstream, error) {
	ctx, cancel := context.WithTimeout(m.ctx, lookupTimeout)
	defer cancel()
	select {
	case m.lookups <- struct{}{}:
		defer func() { <-m.lookups }()
	case <-ctx.Done():
		return Upstream{}, fmt.Errorf("registry lookup: %w", ctx.Err())
	}
	carriers, err := m.Cluster.FindStream(ctx, name)
	if err != nil {
		return Upstream{}, fmt.Errorf("registry lookup: %w", err)
	}
	up, ok := chooseUpstream(carriers, m.Self, name, m.MaxRelayDepth, avoid)
	if !ok {
		return Upstream{}, errNoUpstream
	}
	return up, nil
}

// demandRelay is Demand for a NAME that is not configured here: it starts a relay pull when
// the cluster runs name elsewhere (or notes the demand on a running one).
func (m *Manager) demandRelay(tbl *media.Table, name string) bool {
	if m.Cluster == nil || !streamname.Valid(name) {
		return false
	}
	m.mu.Lock()
	if !m.started || m.closed {
		m.mu.Unlock()
		return false
	}
	if p := m.pulls[name]; p != nil {
		p.demand = time.Now()
		m.mu.Unlock()
		return true
	}
	if until, ok := m.missing[name]; ok && time.Now().Before(until) {
		m.mu.Unlock()
		return false
	}
	if ch, ok := m.inflight[name]; ok {
		// Viewers arriving together share one lookup: wait for it, then see what it started.
		m.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(lookupTimeout):
			return false
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if p := m.pulls[name]; p != nil && !m.closed {
			p.demand = time.Now()
			return true
		}
		return false
	}
	done := make(chan struct{})
	m.inflight[name] = done
	m.mu.Unlock()

	up, err := m.findUpstream(name, "") // unlocked: a registry round trip
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.inflight, name)
	defer close(done) // after the pull is registered (deferred calls run last-in first-out: before the unlock)
	if m.closed {
		return false
	}
	if p := m.pulls[name]; p != nil { // another viewer started it meanwhile
		p.demand = time.Now()
		return true
	}
	if err != nil {
		if !errors.Is(err, errNoUpstream) {
			m.Logger.Warn("relay not started", "stream", name, "err", err)
		}
		if len(m.missing) >= missingMax {
			clear(m.missing)
		}
		m.missing[name] = time.Now().Add(missingTTL)
		return false
	}
	delete(m.missing, name)
	p := &pull{src: Source{Name: name, URL: up.URL}, tbl: tbl, demand: time.Now(), relay: true, upstream: up.ID}
	m.pulls[name] = p
	m.wg.Add(1)
	go m.run(p)
	return true
}

// reresolve looks a relay's upstream up again before a retry. failed is the upstream whose
// pull just failed ("" after an idle stop): it is taken again only when nothing else runs
// the stream, since the registry lists a dead origin until its heartbeat TTL runs out.
func (m *Manager) reresolve(p *pull, failed string) error {
	up, err := m.findUpstream(p.src.Name, failed)
	if err != nil {
		return err
	}
	m.mu.Lock()
	p.src.URL, p.upstream = up.URL, up.ID
	m.mu.Unlock()
	return nil
}

// upstreamOf is p's current upstream origin id.
func (m *Manager) upstreamOf(p *pull) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return p.upstream
}

// RelayUpstream reports whether name is pulled here as a relay copy, and from which origin;
// the stream book lists it so (cluster.Stream.Upstream).
func (m *Manager) RelayUpstream(name string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.pulls[name]; p != nil && p.relay {
		return p.upstream, true
	}
	return "", false
}
