// Package announce keeps the origin's stream list in the registry: it merges the live streams
// (the media table's events) with the static announcements (config entries without a source,
// the admin stream API).
package announce

import (
	"sync"

	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/cluster"
)

// Registry is what the Book needs from the registrar.
type Registry interface {
	PutStream(s cluster.Stream)
	RemoveStream(name string)
}

// OnDemand tells the on-demand NAMEs (ondemand.Manager), which stay listed when they stop.
type OnDemand interface {
	Has(name string) bool
}

// Relays tells which live streams are relay copies pulled from another origin of the cluster
// (ondemand.Manager); the OnDemand given to NewBook may implement it.
type Relays interface {
	RelayUpstream(name string) (upstream string, ok bool)
}

// Book is the origin's stream list. It has two writers: the media table, through its events
// (StreamRunning, StreamStopped), and the static announcements (PutStream, RemoveStream; the
// admin API's Registry). A live stream wins while it runs. When it stops, an on-demand NAME
// goes back to ondemand (it can be started again), else a static entry of its name comes
// back, else the name is removed. A live relay copy is listed running with its upstream
// (cluster.Stream.Upstream), so that it never counts as a publisher of the name.
type Book struct {
	reg      Registry
	onDemand OnDemand

	mu     sync.Mutex
	static map[string]cluster.Stream
	live   map[string]bool
}

var _ media.Events = (*Book)(nil)

// NewBook returns a Book writing to reg with the config's static announcements; od may be nil.
func NewBook(reg Registry, static []cluster.Stream, od OnDemand) *Book {
	b := &Book{reg: reg, onDemand: od, static: map[string]cluster.Stream{}, live: map[string]bool{}}
	for _, s := range static {
		b.static[s.Name] = s
	}
	return b
}

// StreamRunning implements media.Events: the stream is listed running with its metadata.
func (b *Book) StreamRunning(name string, meta cluster.StreamMeta) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.live[name] = true
	s := cluster.Stream{Name: name, State: cluster.StreamRunning, Meta: meta}
	if r, ok := b.onDemand.(Relays); ok {
		s.Upstream, _ = r.RelayUpstream(name)
	}
	b.reg.PutStream(s)
}

// StreamStopped implements media.Events.
func (b *Book) StreamStopped(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.live, name)
	if b.onDemand != nil && b.onDemand.Has(name) {
		b.reg.PutStream(cluster.Stream{Name: name, State: cluster.StreamOnDemand})
	} else if s, ok := b.static[name]; ok {
		b.reg.PutStream(s)
	} else {
		b.reg.RemoveStream(name)
	}
}

// PutStream announces a static stream; it shows once no live stream of its name runs.
func (b *Book) PutStream(s cluster.Stream) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.static[s.Name] = s
	if !b.live[s.Name] {
		b.reg.PutStream(s)
	}
}

// RemoveStream withdraws a static announcement; a live stream of its name stays until it stops.
func (b *Book) RemoveStream(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.static, name)
	if !b.live[name] {
		b.reg.RemoveStream(name)
	}
}
