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
	Candidates []Candidate `json:"candidates"` // eligible running by rank, eligible ondemand by rank, then the rest by ID
	Result     Result      `json:"result"`
	Reason     string      `json:"reason"`
}

// Candidate is one origin listing the name.
type Candidate struct {
	OriginID    string  `json:"origin_id"`
	OriginState string  `json:"origin_state"` // up | draining | "" when its record has not arrived
	StreamState string  `json:"stream_state"` // running | ondemand
	Eligible    bool    `json:"eligible"`
	Reason      string  `json:"reason,omitempty"` // why it is not eligible
	Scheme      string  `json:"scheme,omitempty"` // scheme it would answer with
	Utilization float64 `json:"utilization"`
	// Score is the rendezvous weight: on (name, client) for running, on name for ondemand.
	Score  uint64 `json:"score,string"`
	Rank   int    `json:"rank,omitempty"` // 1-based among eligible candidates of the same stream state
	Chosen bool   `json:"chosen,omitempty"`
}

// Explain answers like Resolve and shows every origin listing the name, with scores and reasons.
func (t *Table) Explain(req Request) Explanation {
	ex := Explanation{Name: req.Name, Proto: req.Proto, Secure: req.Secure, Client: req.Client,
		Hysteresis: t.hysteresis, Candidates: []Candidate{}} // [] rather than null in JSON
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
			Utilization: s.util,
			Score:       score(nameKey, r.o.idHash),
		}
		if r.running {
			c.StreamState = cluster.StreamRunning
			c.Score = score(clientKey, r.o.idHash)
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
	group := func(c *Candidate) int {
		switch {
		case !c.Eligible:
			return 2
		case c.StreamState == cluster.StreamRunning:
			return 0
		}
		return 1
	}
	slices.SortFunc(ex.Candidates, func(a, b Candidate) int {
		if c := cmp.Compare(group(&a), group(&b)); c != 0 || group(&a) == 2 {
			return cmp.Or(c, strings.Compare(a.OriginID, b.OriginID))
		}
		// Same order as pick.beats.
		if a.Score != b.Score {
			return -cmp.Compare(a.Score, b.Score)
		}
		return strings.Compare(a.OriginID, b.OriginID)
	})
	rank := [2]int{}
	for i := range ex.Candidates {
		c := &ex.Candidates[i]
		if g := group(c); g < 2 {
			rank[g]++
			c.Rank = rank[g]
		}
	}
	ex.Reason = d.reason(len(refs), t.hysteresis)
	return ex
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (d *decision) reason(listed int, hysteresis float64) string {
	switch {
	case d.running >= 2:
		s := fmt.Sprintf("running on %s; top two %s (%.2f), %s (%.2f); took %s",
			plural(d.running, "eligible origin", "eligible origins"),
			d.first.o.id, d.first.s.util, d.second.o.id, d.second.s.util, d.chosen().o.id)
		if d.which == tookSecond {
			return s + fmt.Sprintf(" (utilization lower by more than %.2f)", hysteresis)
		}
		if d.second.s.util < d.first.s.util {
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
