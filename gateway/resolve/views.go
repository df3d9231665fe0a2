package resolve

import (
	"maps"
	"slices"
	"strings"

	"github.com/peergate/peergate/shared/cluster"
)

// OriginInfo is one origin as the table holds it, for the admin API.
type OriginInfo struct {
	Origin  cluster.Origin `json:"origin"` // State is "" while only its stream list has arrived
	Streams int            `json:"streams"`
}

// StreamInfo is one name and the origins listing it, for the admin API.
type StreamInfo struct {
	Name    string         `json:"name"`
	Origins []StreamOrigin `json:"origins"`
}

// StreamOrigin is one origin listing a stream, with the stream's state there.
type StreamOrigin struct {
	ID    string `json:"id"`
	State string `json:"state"`           // running | ondemand
	Relay bool   `json:"relay,omitempty"` // a relay copy pulled from another origin (cluster pull-through)
	// Upstream is the origin a relay copy pulls from (cluster.Stream.Upstream).
	Upstream string `json:"upstream,omitempty"`
}

// Origins lists the origins by ID.
func (t *Table) Origins() []OriginInfo {
	t.omu.RLock()
	out := make([]OriginInfo, 0, len(t.byID))
	for _, o := range t.byID {
		rec := o.snap.Load().rec
		rec.Public = maps.Clone(rec.Public) // the snapshot's map stays private
		out = append(out, OriginInfo{Origin: rec, Streams: int(o.count.Load())})
	}
	t.omu.RUnlock()
	slices.SortFunc(out, func(a, b OriginInfo) int { return strings.Compare(a.Origin.ID, b.Origin.ID) })
	return out
}

// Streams lists every name by name, each with its origins by ID.
func (t *Table) Streams() []StreamInfo {
	out := make([]StreamInfo, 0, t.streams.Load())
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for name, e := range sh.m {
			refs := e.refs()
			si := StreamInfo{Name: name, Origins: make([]StreamOrigin, len(refs))}
			for j, r := range refs {
				si.Origins[j] = StreamOrigin{ID: r.o.id, State: cluster.StreamOnDemand}
				if r.running {
					si.Origins[j].State = cluster.StreamRunning
					si.Origins[j].Relay = r.relay
					if r.relay {
						si.Origins[j].Upstream = r.o.upstream(name)
					}
				}
			}
			out = append(out, si)
		}
		sh.mu.RUnlock()
	}
	for i := range out {
		slices.SortFunc(out[i].Origins, func(a, b StreamOrigin) int { return strings.Compare(a.ID, b.ID) })
	}
	slices.SortFunc(out, func(a, b StreamInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Size counts origins, distinct stream names and (name, origin) entries.
func (t *Table) Size() (origins, streams, entries int) {
	t.omu.RLock()
	origins = len(t.byID)
	t.omu.RUnlock()
	return origins, int(t.streams.Load()), int(t.entries.Load())
}
