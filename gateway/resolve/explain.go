package resolve

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/peergate/peergate/shared/cluster"
)

// Explanation shows how Resolve decides for one request; it is meant to be served as JSON.
type Explanation struct {
	Name       string      `json:"name"`
	Proto      Proto       `json:"proto"`
	Secure     bool        `json:"secure"`
	Client     string      `json:"client"`
	Hysteresis float64     `json:"hysteresis"`
	SpillAt    float64     `json:"spill_at"`   // 0: spilling to relays is off
	Candidates []Candidate `json:"candidates"` // eligible running by rank, eligible ondemand by rank, then the rest by ID
	Result     Result      `json:"result"`
	Reason     string      `json:"reason"`
}

// Candidate is one origin listing the name.
type Candidate struct {
	OriginID    string `json:"origin_id"`
	OriginState string `json:"origin_state"` // up | draining | "" when its record has not arrived
	StreamState string `json:"stream_state"` // running | ondemand; "" for a new relay (it does not list the name yet)
	// Relay marks a relay copy (cluster pull-through); NewRelay the origin a spilled viewer
	// is sent to, which will pull the name from the cluster.
	Relay    bool `json:"relay,omitempty"`
	NewRelay bool `json:"new_relay,omitempty"`
	// Upstream is the origin a relay pulls from; Chain its whole way up to the owner
	// (relay, its upstream, ..., owner). A chain that meets an upstream not running the name
	// (it died, and the relay has not re-resolved yet) ends with "(not running)" after it.
	Upstream    string   `json:"upstream,omitempty"`
	Chain       []string `json:"chain,omitempty"`
	Eligible    bool     `json:"eligible"`
	Reason      string   `json:"reason,omitempty"` // why it is not eligible
	Scheme      string   `json:"scheme,omitempty"` // scheme it would answer with
	Utilization float64  `json:"utilization"`
	// Fill is the share of the origin's declared capacity in use (clients, bandwidth; no
	// CPU), the figure balance.spill_at is compared with.
	Fill float64 `json:"fill"`
	// Score is the rendezvous weight: on (name, client) for running owners, on name for
	// relays, new relays and ondemand.
	Score  uint64 `json:"score,string"`
	Rank   int    `json:"rank,omitempty"` // 1-based among eligible candidates of the same stream state
	Chosen bool   `json:"chosen,omitempty"`
}

// Explain answers like Resolve and shows every origin listing the name, with scores and reasons.
func (t *Table) Explain(req Request) Explanation {
	ex := Explanation{Name: req.Name, Proto: req.Proto, Secure: req.Secure, Client: req.Client,
		Hysteresis: t.hysteresis, SpillAt: t.spillAt, Candidates: []Candidate{}} // [] rather than null in JSON
	nameKey, clientKey := keys(req.Name, req.Client)
	e := t.lookup(nameKey, req.Name)
	refs := e.refs()
	if len(refs) == 0 {
		ex.Result = Result{Outcome: NotFound}
		ex.Reason = fmt.Sprintf("no origin lists %q", req.Name)
		return ex
	}
	snaps := make([]*snapshot, len(refs))
	for i, r := range refs {
		snaps[i] = r.o.snap.Load()
	}
	d := t.decide(&e, snaps, req, nameKey, clientKey)
	ex.Result = d.result()

	for i, r := range refs {
		s := snaps[i]
		c := Candidate{
			OriginID:    r.o.id,
			OriginState: s.rec.State,
			StreamState: cluster.StreamOnDemand,
			Utilization: s.util(),
			Fill:        s.fill(),
			Score:       score(nameKey, r.o.idHash),
		}
		if r.running {
			c.StreamState = cluster.StreamRunning
			c.Relay = r.relay
			if !r.relay {
				c.Score = score(clientKey, r.o.idHash)
			} else {
				c.Upstream, c.Chain = r.o.upstream(req.Name), chainOf(refs, i, req.Name)
			}
		}
		sch, w := s.check(req.Proto, req.Secure)
		switch w {
		case eligible:
			c.Eligible, c.Scheme = true, schemeNames[sch]
		case notUp:
			c.Reason = "origin state is " + cmp.Or(s.rec.State, `unknown (no record yet)`)
		case full:
			c.Reason = fmt.Sprintf("at capacity: clients %d/%d, egress %d/%d bit/s",
				s.rec.Load.Clients, s.rec.Capacity.MaxClients, s.rec.Load.EgressBps, s.rec.Capacity.MaxBandwidthBps)
		case noURL:
			c.Reason = "no public URL for " + req.Proto.String()
		}
		c.Chosen = ex.Result.Outcome == OK && d.chosen().o == r.o
		ex.Candidates = append(ex.Candidates, c)
	}
	if d.which == tookSpill {
		sp := &d.spill
		ex.Candidates = append(ex.Candidates, Candidate{OriginID: sp.o.id, OriginState: sp.s.rec.State,
			NewRelay: true, Eligible: true, Scheme: schemeNames[sp.scheme], Utilization: sp.s.util(), Fill: sp.s.fill(),
			Score: sp.score, Chosen: true})
	}
	group := func(c *Candidate) int {
		switch {
		case !c.Eligible:
			return 3
		case c.StreamState == cluster.StreamRunning && !c.Relay:
			return 0
		case c.Relay, c.NewRelay:
			return 1
		}
		return 2
	}
	slices.SortFunc(ex.Candidates, func(a, b Candidate) int {
		if c := cmp.Compare(group(&a), group(&b)); c != 0 || group(&a) == 3 {
			return cmp.Or(c, strings.Compare(a.OriginID, b.OriginID))
		}
		// Same order as pick.beats.
		if a.Score != b.Score {
			return -cmp.Compare(a.Score, b.Score)
		}
		return strings.Compare(a.OriginID, b.OriginID)
	})
	rank := [3]int{}
	for i := range ex.Candidates {
		c := &ex.Candidates[i]
		if g := group(c); g < 3 {
			rank[g]++
			c.Rank = rank[g]
		}
	}
	ex.Reason = d.reason(len(refs), t.hysteresis)
	if d.which == tookRelay || d.which == tookAnyRelay {
		for _, c := range ex.Candidates {
			if c.Chosen && len(c.Chain) > 1 {
				ex.Reason += "; it pulls the stream along " + strings.Join(c.Chain, " <- ")
			}
		}
	}
	if d.which == tookSpill {
		ex.Reason += "; the new relay pulls from an owner with room, else from the shallowest relay with room (depth bounded, no loops)"
	}
	if d.spilled {
		ex.Reason = d.spillReason(t.spillAt) + "; " + ex.Reason
	}
	return ex
}

// chainOf walks refs[i]'s upstreams: the ids from the relay up to an owner, or up to the
// first upstream that does not run the name, or until an id repeats (a loop).
func chainOf(refs []ref, i int, name string) []string {
	up := make(map[string]string, len(refs)) // running origin -> its upstream ("" for an owner)
	for _, r := range refs {
		if r.running {
			up[r.o.id] = ""
			if r.relay {
				up[r.o.id] = r.o.upstream(name)
			}
		}
	}
	chain := []string{refs[i].o.id}
	for id := up[refs[i].o.id]; id != "" && len(chain) <= len(refs); {
		if slices.Contains(chain, id) {
			break
		}
		chain = append(chain, id)
		next, ok := up[id]
		if !ok {
			chain = append(chain, "(not running)")
			break
		}
		id = next
	}
	return chain
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// spillReason says why and where a viewer spilled over to relays.
func (d *decision) spillReason(spillAt float64) string {
	s := fmt.Sprintf("owner choice filled to spill_at %.2f of its declared capacity (or none eligible)", spillAt)
	switch d.which {
	case tookRelay:
		return s + fmt.Sprintf("; spilled to relay %s (%.2f, rendezvous on name among %s under spill_at)",
			d.relay.o.id, d.relay.s.fill(), plural(d.relays, "eligible relay", "eligible relays"))
	case tookSpill:
		return s + fmt.Sprintf("; no relay under spill_at; spilled to new relay %s (%.2f, rendezvous on name among origins under spill_at), which pulls the stream from the cluster",
			d.spill.o.id, d.spill.s.fill())
	}
	return s + "; no relay or other origin under spill_at"
}

func (d *decision) reason(listed int, hysteresis float64) string {
	switch {
	case d.which == tookRelay || d.which == tookSpill:
		return fmt.Sprintf("%s eligible", plural(d.running, "owner", "owners"))
	case d.which == tookAnyRelay:
		return fmt.Sprintf("no owner eligible; took relay %s (%.2f) of %s", d.anyRelay.o.id, d.anyRelay.s.util(),
			plural(d.relays, "eligible relay", "eligible relays"))
	case d.running >= 2:
		s := fmt.Sprintf("running on %s; top two %s (%.2f), %s (%.2f); took %s",
			plural(d.running, "eligible origin", "eligible origins"),
			d.first.o.id, d.first.s.util(), d.second.o.id, d.second.s.util(), d.chosen().o.id)
		if d.which == tookSecond {
			return s + fmt.Sprintf(" (utilization lower by more than %.2f)", hysteresis)
		}
		if d.second.s.util() < d.first.s.util() {
			return s + fmt.Sprintf(" (%s not lower by more than %.2f)", d.second.o.id, hysteresis)
		}
		return s
	case d.running == 1:
		return fmt.Sprintf("running on 1 eligible origin; took %s", d.chosen().o.id)
	case d.onDemand > 0:
		return fmt.Sprintf("not running on any eligible origin; on demand on %s; took %s (rendezvous on name)",
			plural(d.onDemand, "eligible origin", "eligible origins"), d.chosen().o.id)
	}
	return fmt.Sprintf("listed on %s, none eligible", plural(listed, "origin", "origins"))
}
