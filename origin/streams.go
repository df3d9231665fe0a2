package main

import (
	"sync"

	"github.com/peergate/peergate/shared/cluster"
)

// registrySink is what streamBook needs from the registrar.
type registrySink interface {
	PutStream(s cluster.Stream)
	RemoveStream(name string)
}

// streamBook merges the two writers of the stream list: the media table (live streams) and
// the static announcements (config entries without a source, the admin API). A live stream
// wins while it runs; when it ends, a static entry of the same name comes back.
type streamBook struct {
	reg registrySink

	mu     sync.Mutex
	static map[string]cluster.Stream
	live   map[string]bool
}

func newStreamBook(reg registrySink, static []cluster.Stream) *streamBook {
	b := &streamBook{reg: reg, static: map[string]cluster.Stream{}, live: map[string]bool{}}
	for _, s := range static {
		b.static[s.Name] = s
	}
	return b
}

// mediaSide is given to ondemand.RegistryEvents.
type mediaSide struct{ b *streamBook }

func (m mediaSide) PutStream(s cluster.Stream) {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	if s.State == cluster.StreamRunning {
		m.b.live[s.Name] = true
	} else {
		delete(m.b.live, s.Name) // an on-demand NAME back to ondemand
	}
	m.b.reg.PutStream(s)
}

func (m mediaSide) RemoveStream(name string) {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	delete(m.b.live, name)
	if s, ok := m.b.static[name]; ok {
		m.b.reg.PutStream(s)
		return
	}
	m.b.reg.RemoveStream(name)
}

// apiSide is given to the admin stream API.
type apiSide struct{ b *streamBook }

func (a apiSide) PutStream(s cluster.Stream) {
	a.b.mu.Lock()
	defer a.b.mu.Unlock()
	a.b.static[s.Name] = s
	if !a.b.live[s.Name] {
		a.b.reg.PutStream(s)
	}
}

func (a apiSide) RemoveStream(name string) {
	a.b.mu.Lock()
	defer a.b.mu.Unlock()
	delete(a.b.static, name)
	if !a.b.live[name] {
		a.b.reg.RemoveStream(name)
	}
}
