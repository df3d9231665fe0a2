package resolve

import (
	"cmp"
	"slices"
	"strings"

	"github.com/peergate/peergate/shared/cluster"
)

// Copy is one origin that can serve a name to a viewer, as Copies lists it (HLS content
// steering: one pathway per copy).
type Copy struct {
	OriginID string
	BaseURL  string // scheme://host[:port] without a trailing slash, as Result.BaseURL
	Scheme   string
	Relay    bool // a relay copy, or the new relay a spilled viewer would start
	Full     bool // at its declared capacity: listed for the viewers already there, after every eligible copy
	Draining bool // draining: listed last, for the viewers still there
	// Crowded marks a copy filled to balance.spill_at of its declared capacity or more (when
	// spilling is on): new viewers spill elsewhere, and a steering answer moves players off it.
	Crowded bool
	// Route, on the first copy only, is the route of Resolve's answer as its log line names
	// it (Result.RouteLog: owner, relay, new_relay, ondemand, with /spilled).
	Route string
	// Meta describes the stream on this origin (codecs, size, bitrate) when the origin
	// announced it; zero otherwise. Codecs is as the registry holds it: unchecked.
	Meta cluster.StreamMeta

	rank  uint8 // group, then kind, for the order
	score uint64
	fill  float64
}

// Ranks of the copies after the first, in the order they are listed.
const (
	rankOwner    uint8 = iota // eligible running owner
	rankRelay                 // eligible relay (existing, or the spill target)
	rankOnDemand              // eligible origin listing the name on demand
	rankFull                  // running there, but full
	rankDraining              // running there, draining
)

// maxStackSnaps bounds the snapshots Copies keeps on the stack; names with more copies allocate.
const maxStackSnaps = 16

// Copies lists, into dst[:0], the origins that can serve req.Name, ordered for this viewer:
// first the origin Resolve answers (when it answers OK, the two agree on the same table),
// then the other eligible copies (owners by the viewer's rendezvous score, then relays
// and the spill target when the owner is filled past spill_at, by rendezvous on the
// name, then origins listing the name on demand), then copies at capacity, then draining
// ones (listed so that a viewer still there is not cut, but never first). Origins down,
// gone or without a URL for req.Proto are not listed. The outcome is Resolve's; with
// Unavailable the list may still hold full or draining copies. It does not allocate when
// dst has room and the name has at most 16 origins.
func (t *Table) Copies(req Request, dst []Copy) ([]Copy, Outcome) {
	dst = dst[:0]
	nameKey, clientKey := keys(req.Name, req.Client)
	e := t.lookup(nameKey, req.Name)
	n := e.len()
	if n == 0 {
		return dst, NotFound
	}
	var stack [maxStackSnaps]*snapshot
	snaps := stack[:0]
	if n > maxStackSnaps {
		snaps = make([]*snapshot, 0, n)
	}
	for i := range n {
		snaps = append(snaps, e.at(i).o.snap.Load())
	}
	d := t.decide(&e, snaps, req, nameKey, clientKey)
	d.count(req)
	chosen := d.chosen()
	oc := Unavailable
	if chosen != nil {
		oc = OK
		relay := chosen == &d.relay || chosen == &d.anyRelay || chosen == &d.spill
		dst = append(dst, chosen.copyOf(relay))
		dst[0].Route = d.result().RouteLog()
		if chosen != &d.spill {
			dst[0].Meta = chosen.o.meta(req.Name)
		}
	}
	start := len(dst)
	for i := range n {
		r := e.at(i)
		if chosen != nil && r.o == chosen.o {
			continue
		}
		s := snaps[i]
		sch, w := s.check(req.Proto, req.Secure)
		var c Copy
		switch {
		case w == eligible && r.relay:
			c = (&pick{o: r.o, s: s, scheme: sch, score: score(nameKey, r.o.idHash)}).copyOf(true)
			c.rank = rankRelay
		case w == eligible && r.running:
			c = (&pick{o: r.o, s: s, scheme: sch, score: score(clientKey, r.o.idHash)}).copyOf(false)
			c.rank = rankOwner
		case w == eligible:
			c = (&pick{o: r.o, s: s, scheme: sch, score: score(nameKey, r.o.idHash)}).copyOf(false)
			c.rank = rankOnDemand
		case !r.running:
			continue // an on-demand origin that cannot take the viewer serves nobody yet
		case w == full:
			c = (&pick{o: r.o, s: s, scheme: s.urlFor(req.Proto, req.Secure), score: score(nameKey, r.o.idHash)}).copyOf(r.relay)
			c.rank, c.Full = rankFull, true
		case w == notUp && !s.gone && s.rec.State == cluster.StateDraining:
			sch := s.urlFor(req.Proto, req.Secure)
			if sch < 0 {
				continue
			}
			c = (&pick{o: r.o, s: s, scheme: sch, score: score(nameKey, r.o.idHash)}).copyOf(r.relay)
			c.rank, c.Draining = rankDraining, true
		default:
			continue // down, gone, no record yet, or no URL for the protocol
		}
		if r.running {
			c.Meta = r.o.meta(req.Name)
		}
		dst = append(dst, c)
	}
	for i := range dst {
		dst[i].Crowded = t.spillAt > 0 && dst[i].fill >= t.spillAt
	}
	if d.spilled && d.spill.o != nil && chosen != &d.spill {
		c := d.spill.copyOf(true)
		c.rank = rankRelay
		dst = append(dst, c)
	}
	slices.SortFunc(dst[start:], func(a, b Copy) int {
		if c := cmp.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		if a.score != b.score {
			return -cmp.Compare(a.score, b.score) // as pick.beats
		}
		return strings.Compare(a.OriginID, b.OriginID)
	})
	return dst, oc
}

// copyOf is the Copy of a pick, without the stream's description.
func (p *pick) copyOf(relay bool) Copy {
	return Copy{OriginID: p.o.id, BaseURL: p.s.urls[p.scheme], Scheme: schemeNames[p.scheme], Relay: relay,
		score: p.score, fill: p.s.fill()}
}
