package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/peergate/peergate/shared/cluster"
	"github.com/redis/go-redis/v9"
)

// Publish claims: one NAME is published on one origin of the cluster at a time.
//
//	pg:<ns>:claim:<NAME>    STRING origin id, PX TTL
//
// An origin takes the claim before it accepts a publisher (ClaimPublish), renews it on every
// heartbeat while the stream runs there, and deletes it when the stream stops or the origin
// deregisters; an origin that dies loses its claims one TTL later. A claim is only ever
// renewed or deleted by the origin id it names (a Lua compare-and-set), so the last writer
// can never take over a live claim. "Runs there" means listed running in this registrar's
// stream list (a static running entry of the same NAME keeps the claim too; a relay copy,
// cluster.Stream.Upstream, does not: relays are never publishers). Only publishers
// that pass the listeners' Authorize claim; file sources and on-demand pulls do not. Claims
// are not signed: whoever may write to Redis can hold one, as they can delete any record.
const (
	keyClaim = "claim"
	// claimTimeout bounds the claim read a publisher waits for; past it the publish goes ahead.
	claimTimeout = time.Second
	// claimStartGrace keeps a claim that was taken but whose stream never showed up running
	// (a publisher still sending its headers, or one that failed after the claim).
	claimStartGrace = 10 * time.Second
)

// ErrClaimed is wrapped by ClaimPublish's error when another origin holds the NAME.
var ErrClaimed = errors.New("stream is published on another origin")

func (k keyspace) claim(name string) string { return keyPrefix + k.ns + ":" + keyClaim + ":" + name }

// claimSrc takes or renews KEYS[1] for ARGV[1] for ARGV[2] ms unless another id holds it;
// it returns "" when the caller holds it now, else the holder's id.
const claimSrc = `
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
	redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
	return ''
end
return v`

var claimScript = redis.NewScript(claimSrc)

// releaseSrc deletes KEYS[1] if ARGV[1] holds it.
const releaseSrc = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0`

// claimState is one NAME this origin claimed.
type claimState struct {
	taken   time.Time
	seen    bool   // the stream ran here since the claim was taken
	lostTo  string // another origin holds it (logged once per holder)
	pending bool   // not yet written: Redis was away when the publisher came
}

// ClaimPublish takes the cluster-wide claim on name for this origin, before a publisher of
// name is accepted. It fails, wrapping ErrClaimed, when another live origin holds the claim.
// When Redis cannot be asked (within one second) it logs a warning and lets the publish go
// ahead: a registry outage must never stop live ingest (fail-open); the claim is then taken
// on the next heartbeat that reaches Redis. The claim is renewed while the stream runs here
// and released when it stops.
func (r *Registrar) ClaimPublish(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	// Claim I/O is serialised, so a release decided by a heartbeat never lands after this take.
	err := r.lockClaimIO(ctx)
	var holder string
	if err == nil {
		holder, err = claimScript.Run(ctx, r.c, []string{r.ks.claim(name)}, r.id, r.ttl.Milliseconds()).Text()
		r.unlockClaimIO()
	}
	if err == nil && holder != "" {
		// Not ours. A state we keep stays: its stream may run here since a Redis outage.
		return fmt.Errorf("%w: %s is published on origin %s", ErrClaimed, name, holder)
	}
	if err != nil {
		r.log.Warn("publish claim not checked, Redis unreachable: accepting the publisher (duplicates across origins are possible until Redis answers)",
			"stream", name, "err", err)
	}
	// Re-armed for every publisher: its grace to start running counts from now, and a
	// stream seen running before must be seen again before the grace ends.
	r.claimMu.Lock()
	r.claims[name] = &claimState{taken: time.Now(), pending: err != nil}
	r.claimMu.Unlock()
	return nil
}

func (r *Registrar) lockClaimIO(ctx context.Context) error {
	select {
	case r.claimIO <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Registrar) unlockClaimIO() { <-r.claimIO }

// claimStep renews the claims of streams that run here (or were claimed a moment ago and
// may still start) and releases the others; Run calls it on every heartbeat.
func (r *Registrar) claimStep(ctx context.Context) {
	if r.lockClaimIO(ctx) != nil {
		return
	}
	defer r.unlockClaimIO()
	type op struct {
		name  string
		keep  bool
		cmd   *redis.Cmd
		state *claimState
	}
	now := time.Now()
	r.claimMu.Lock()
	ops := make([]op, 0, len(r.claims))
	r.mu.Lock()
	for name, st := range r.claims {
		st0 := r.streams[name]
		running := st0.State == cluster.StreamRunning && !st0.Relay() // a relay copy never holds a claim
		if running {
			st.seen = true
		}
		keep := running || (!st.seen && now.Sub(st.taken) < claimStartGrace)
		ops = append(ops, op{name: name, keep: keep, state: st})
		if !keep {
			delete(r.claims, name)
		}
	}
	r.mu.Unlock()
	r.claimMu.Unlock()
	if len(ops) == 0 {
		return
	}

	_, _ = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range ops {
			key := []string{r.ks.claim(ops[i].name)}
			if ops[i].keep {
				ops[i].cmd = p.Eval(ctx, claimSrc, key, r.id, r.ttl.Milliseconds())
			} else {
				ops[i].cmd = p.Eval(ctx, releaseSrc, key, r.id)
			}
		}
		return nil
	})
	r.claimMu.Lock()
	defer r.claimMu.Unlock()
	for _, o := range ops {
		if !o.keep {
			continue
		}
		holder, err := o.cmd.Text()
		switch {
		case err != nil:
			// Kept: renewed on the next heartbeat that reaches Redis.
		case holder == "":
			if o.state.lostTo != "" || o.state.pending {
				r.log.Info("publish claim taken", "stream", o.name)
			}
			o.state.lostTo, o.state.pending = "", false
		case holder != o.state.lostTo:
			// Published on two origins: the other one claimed it while we could not (Redis was
			// away when our publisher came). Both keep ingesting; the operator must choose.
			o.state.lostTo = holder
			r.log.Warn("stream is also published on another origin", "stream", o.name, "holder", holder)
		}
	}
}

// releaseClaims deletes every claim this origin holds, for Deregister.
func (r *Registrar) releaseClaims(ctx context.Context) {
	if r.lockClaimIO(ctx) != nil {
		return
	}
	defer r.unlockClaimIO()
	r.claimMu.Lock()
	names := make([]string, 0, len(r.claims))
	for name := range r.claims {
		names = append(names, name)
	}
	clear(r.claims)
	r.claimMu.Unlock()
	if len(names) == 0 {
		return
	}
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, name := range names {
			p.Eval(ctx, releaseSrc, []string{r.ks.claim(name)}, r.id)
		}
		return nil
	})
	if err != nil {
		r.log.Warn("publish claims not released; they expire with the TTL", "err", err)
	}
}
