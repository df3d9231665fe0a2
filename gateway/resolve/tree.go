package resolve

import (
	"slices"
	"strings"
)

// Tree is the relay tree of one stream (cluster pull-through) as the table sees it: the
// origins running it as owners, each with the relays pulling from it nested under it, relays
// of relays under those, and so on. For the admin API.
type Tree struct {
	Name   string     `json:"name"`
	Owners []TreeNode `json:"owners"`
	// Detached are relays whose upstream does not list the stream running any more (it died
	// or stopped and the relay has not re-resolved yet) or whose chain loops; their own
	// relays stay nested under them.
	Detached []TreeNode `json:"detached"`
	// OnDemand are origins listing the stream on demand, not running it.
	OnDemand []TreeNode `json:"ondemand"`
	Relays   int        `json:"relays"` // relay copies in all
	Depth    int        `json:"depth"`  // deepest relay below an owner: 0 with no relay
}

// TreeNode is one origin carrying the stream.
type TreeNode struct {
	OriginID    string `json:"origin_id"`
	OriginState string `json:"origin_state"` // up | draining | "" while its record has not arrived
	// Upstream is the origin a relay pulls from; "" for an owner.
	Upstream string `json:"upstream,omitempty"`
	// Depth is 0 for an owner, 1 for a relay of an owner, 2 for a relay of that, ...; for a
	// detached relay, counted from the top of its detached subtree (itself at 1).
	Depth           int   `json:"depth"`
	Clients         int64 `json:"clients"`
	MaxClients      int64 `json:"max_clients,omitempty"`
	EgressBps       int64 `json:"egress_bps"`
	MaxBandwidthBps int64 `json:"max_bandwidth_bps,omitempty"`
	// Fill is the share of the declared capacity in use (what balance.spill_at is compared
	// with); Utilization also counts CPU.
	Fill        float64 `json:"fill"`
	Utilization float64 `json:"utilization"`
	Full        bool    `json:"full,omitempty"`
	// Relays are the origins pulling the stream from this one, by id.
	Relays []TreeNode `json:"relays"`
}

// Tree returns name's relay tree, and false when no origin lists name.
func (t *Table) Tree(name string) (Tree, bool) {
	nameKey, _ := keys(name, "")
	e := t.lookup(nameKey, name)
	refs := e.refs()
	if len(refs) == 0 {
		return Tree{}, false
	}
	slices.SortFunc(refs, func(a, b ref) int { return strings.Compare(a.o.id, b.o.id) })
	tr := Tree{Name: name, Owners: []TreeNode{}, Detached: []TreeNode{}, OnDemand: []TreeNode{}}
	ups := make([]string, len(refs)) // each relay's upstream, read once
	for i, r := range refs {
		if r.relay {
			ups[i] = r.o.upstream(name)
		}
	}
	node := func(i int) TreeNode {
		r, s := refs[i], refs[i].o.snap.Load()
		return TreeNode{OriginID: r.o.id, OriginState: s.rec.State, Upstream: ups[i],
			Clients: s.rec.Load.Clients, MaxClients: s.rec.Capacity.MaxClients,
			EgressBps: s.rec.Load.EgressBps, MaxBandwidthBps: s.rec.Capacity.MaxBandwidthBps,
			Fill: s.fill(), Utilization: s.util(), Full: s.full(), Relays: []TreeNode{}}
	}
	running := map[string]bool{}   // ids running the name, as owner or relay
	children := map[string][]int{} // upstream id -> relays pulling from it (indexes in refs, by id)
	for i, r := range refs {
		switch {
		case !r.running:
			tr.OnDemand = append(tr.OnDemand, node(i))
		case r.relay:
			running[r.o.id] = true
			children[ups[i]] = append(children[ups[i]], i)
			tr.Relays++
		default:
			running[r.o.id] = true
		}
	}
	placed := map[string]bool{}
	var grow func(n *TreeNode, depth int)
	grow = func(n *TreeNode, depth int) {
		placed[n.OriginID] = true
		n.Depth = depth
		for _, c := range children[n.OriginID] {
			if placed[refs[c].o.id] {
				continue
			}
			cn := node(c)
			grow(&cn, depth+1)
			n.Relays = append(n.Relays, cn)
		}
	}
	for i, r := range refs {
		if r.running && !r.relay {
			n := node(i)
			grow(&n, 0)
			tr.Owners = append(tr.Owners, n)
		}
	}
	for _, o := range tr.Owners {
		tr.Depth = max(tr.Depth, o.maxDepth())
	}
	// Relays not reached from an owner: first those whose upstream runs nothing (roots of
	// detached subtrees), then whatever is left (loops).
	for pass := range 2 {
		for i, r := range refs {
			if !r.relay || !r.running || placed[r.o.id] || (pass == 0 && running[ups[i]]) {
				continue
			}
			n := node(i)
			grow(&n, 1)
			tr.Detached = append(tr.Detached, n)
		}
	}
	return tr, true
}

func (n *TreeNode) maxDepth() int {
	d := n.Depth
	for i := range n.Relays {
		d = max(d, n.Relays[i].maxDepth())
	}
	return d
}
