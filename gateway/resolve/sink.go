package resolve

import (
	"slices"
	"strings"

	"github.com/peergate/peergate/shared/cluster"
)

// ReplaceAll makes the table equal to origins by applying the difference, so readers never see
// a half-empty table: origins are refreshed and their lists diffed first, then the missing ones dropped.
func (t *Table) ReplaceAll(origins []cluster.OriginView) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	keep := make(map[string]struct{}, len(origins))
	for i := range origins {
		v := &origins[i]
		keep[v.Origin.ID] = struct{}{}
		o := t.putOrigin(v.Origin)
		t.putStreams(o, v.Streams)
	}
	for id, o := range t.byID {
		if _, ok := keep[id]; !ok {
			t.dropOrigin(o)
		}
	}
}

// PutOrigin adds an origin or refreshes its record; its streams are untouched.
func (t *Table) PutOrigin(rec cluster.Origin) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.putOrigin(rec)
}

// PutStreams replaces one origin's whole stream list. Streams of an origin whose record has
// not arrived yet are kept, and the origin is not eligible until PutOrigin brings it.
func (t *Table) PutStreams(originID string, streams []cluster.Stream) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.putStreams(t.originFor(originID), streams)
}

// ApplyStreams applies a delta to one origin's stream list.
func (t *Table) ApplyStreams(originID string, changes []cluster.StreamChange) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	o := t.originFor(originID)
	for i := range changes {
		c := &changes[i]
		if c.Removed {
			t.remove(o, c.Name)
			continue
		}
		if k, ok := kindOf(&c.Stream); ok && c.Name != "" {
			t.upsert(o, c.Name, k)
		}
	}
}

// DropOrigin removes an origin and all its streams.
func (t *Table) DropOrigin(originID string) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if o := t.byID[originID]; o != nil {
		t.dropOrigin(o)
	}
}

// kind is how an origin lists a name: running (as owner or relay) or on demand.
type kind struct {
	running  bool   // else ondemand
	relay    bool   // a running relay copy pulled from another origin (cluster.Stream.Upstream)
	upstream string // with relay: the origin it pulls from
	meta     *cluster.StreamMeta
}

// kindOf maps a stream entry to its kind; unknown states are ignored rather than guessed.
func kindOf(s *cluster.Stream) (kind, bool) {
	switch s.State {
	case cluster.StreamRunning:
		k := kind{running: true, relay: s.Upstream != "", upstream: s.Upstream}
		if s.Meta != (cluster.StreamMeta{}) {
			m := s.Meta
			m.Codecs = strings.Clone(m.Codecs) // never retain the caller's buffers
			k.meta = &m
		}
		return k, true
	case cluster.StreamOnDemand:
		return kind{}, true
	}
	return kind{}, false
}

func (t *Table) putOrigin(rec cluster.Origin) *origin {
	if o := t.byID[rec.ID]; o != nil {
		o.snap.Store(newSnapshot(rec, o.snap.Load()))
		return o
	}
	return t.addOrigin(rec.ID, newSnapshot(rec, nil))
}

// originFor returns the origin, adding a placeholder that is not eligible if it is unknown.
func (t *Table) originFor(id string) *origin {
	if o := t.byID[id]; o != nil {
		return o
	}
	return t.addOrigin(id, newSnapshot(cluster.Origin{ID: id}, nil))
}

// addOrigin publishes a new origin; it has its snapshot before any reader can see it.
func (t *Table) addOrigin(id string, snap *snapshot) *origin {
	id = strings.Clone(id)
	o := &origin{id: id, idHash: idHash(id)}
	o.snap.Store(snap)
	t.omu.Lock()
	t.byID[id] = o
	t.omu.Unlock()
	return o
}

func (t *Table) dropOrigin(o *origin) {
	// In-flight readers may still hold refs to it: make it ineligible before unlinking.
	old := o.snap.Load()
	gone := newSnapshot(old.rec, old)
	gone.up, gone.gone = false, true
	o.snap.Store(gone)
	for _, name := range o.names {
		sh := t.shardOf(name)
		old := sh.m[name]
		if i := old.indexOf(o); i >= 0 {
			t.unlink(sh, name, &old, i)
		}
	}
	o.names = nil
	o.mmu.Lock()
	o.metas = nil
	o.mmu.Unlock()
	o.count.Store(0)
	t.omu.Lock()
	delete(t.byID, o.id)
	t.omu.Unlock()
}

// putStreams diffs o's list against streams: unchanged names cost a map lookup and no lock.
func (t *Table) putStreams(o *origin, streams []cluster.Stream) {
	n := len(o.names)
	seen := make([]uint64, (n+63)/64) // by position in o.names; new names land beyond n
	for i := range streams {
		s := &streams[i]
		k, ok := kindOf(s)
		if !ok || s.Name == "" {
			continue
		}
		if pos := t.upsert(o, s.Name, k); pos < n {
			seen[pos/64] |= 1 << (pos % 64)
		}
	}
	// Downwards, so that the name swapped into a freed position has already been kept.
	for pos := n - 1; pos >= 0; pos-- {
		if seen[pos/64]&(1<<(pos%64)) == 0 {
			t.removeAt(o, pos)
		}
	}
}

// store publishes refs for name. key must be the name's canonical string: assigning to a
// map replaces its key.
func (sh *shard) store(key string, refs []ref) {
	e := entryOf(refs)
	sh.mu.Lock()
	sh.m[key] = e
	sh.mu.Unlock()
}

// upsert makes o list name with the given state and returns the name's position in o.names.
func (t *Table) upsert(o *origin, name string, k kind) int {
	sh := t.shardOf(name)
	e := sh.m[name]
	if i := e.indexOf(o); i >= 0 {
		r := e.at(i)
		key := o.names[r.pos]
		if k.relay || r.relay {
			if up := o.upstream(key); up != k.upstream {
				o.setUpstream(key, t.internID(k.upstream)) // before the ref says relay: readers find it
			}
		}
		if !o.sameMeta(name, k.meta) {
			o.setMeta(key, k.meta)
		}
		if r.running != k.running || r.relay != k.relay {
			next := e.refs()
			next[i].running, next[i].relay = k.running, k.relay
			sh.store(key, next)
		}
		return int(r.pos)
	}
	var key string
	if e.len() > 0 {
		first := e.at(0)
		key = first.o.names[first.pos] // share the copy the other origins use
	} else {
		key = strings.Clone(name) // never retain the caller's buffers
		t.streams.Add(1)
	}
	pos := len(o.names)
	o.names = append(o.names, key)
	if k.meta != nil {
		o.setMeta(key, k.meta)
	}
	o.count.Add(1)
	if k.relay {
		o.setUpstream(key, t.internID(k.upstream))
	}
	sh.store(key, append(e.refs(), ref{o: o, pos: uint32(pos), running: k.running, relay: k.relay}))
	t.entries.Add(1)
	return pos
}

// internID returns id as a string the table keeps anyway (the known origin's own id), else a
// copy: the table never retains the caller's buffers.
func (t *Table) internID(id string) string {
	if id == "" {
		return ""
	}
	if o := t.byID[id]; o != nil {
		return o.id
	}
	return strings.Clone(id)
}

func (t *Table) remove(o *origin, name string) {
	e := t.shardOf(name).m[name]
	if i := e.indexOf(o); i >= 0 {
		t.removeAt(o, int(e.at(i).pos))
	}
}

// removeAt drops the name at pos from o, moving o's last name into its place.
func (t *Table) removeAt(o *origin, pos int) {
	name := o.names[pos]
	sh := t.shardOf(name)
	e := sh.m[name]
	t.unlink(sh, name, &e, e.indexOf(o))
	o.setMeta(name, nil)

	last := len(o.names) - 1
	if pos != last {
		moved := o.names[last]
		o.names[pos] = moved
		msh := t.shardOf(moved)
		me := msh.m[moved]
		next := me.refs()
		next[me.indexOf(o)].pos = uint32(pos)
		msh.store(moved, next)
	}
	o.names[last] = ""
	o.names = o.names[:last]
	if cap(o.names) > 64 && len(o.names) < cap(o.names)/4 {
		o.names = append([]string(nil), o.names...) // give back the memory of a list that shrank
	}
	o.count.Add(-1)
}

// unlink removes the i-th ref of name's entry e.
func (t *Table) unlink(sh *shard, name string, e *entry, i int) {
	if r := e.at(i); r.relay {
		r.o.setUpstream(name, "")
	}
	if e.len() == 1 {
		sh.mu.Lock()
		delete(sh.m, name)
		sh.mu.Unlock()
		t.streams.Add(-1)
	} else {
		sh.store(name, slices.Delete(e.refs(), i, i+1))
	}
	t.entries.Add(-1)
}
