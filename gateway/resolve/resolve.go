// Package resolve keeps the gateway's in-memory index of the cluster and chooses the origin that serves each request.
package resolve

import (
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/peergate/peergate/shared/cluster"
)

var _ cluster.Sink = (*Table)(nil)

// Proto is the protocol a viewer asks with; it picks which public URLs of an origin count.
type Proto uint8

// Protocols.
const (
	ProtoHTTP Proto = iota // http, https
	ProtoRTSP              // rtsp, rtsps
	ProtoRTMP              // rtmp, rtmps
)

var protoNames = [...]string{"http", "rtsp", "rtmp"}

func (p Proto) String() string {
	if int(p) < len(protoNames) {
		return protoNames[p]
	}
	return "invalid"
}

// MarshalText makes a Proto read as its name in JSON.
func (p Proto) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// ParseProto maps "http", "rtsp" or "rtmp" to a Proto.
func ParseProto(s string) (Proto, bool) {
	for i, n := range protoNames {
		if s == n {
			return Proto(i), true
		}
	}
	return 0, false
}

// Request is what a listener asks: who should serve Name to this viewer?
type Request struct {
	Name   string
	Proto  Proto
	Secure bool   // the viewer asked for https, rtsps or rtmps
	Client string // viewer key for stickiness: client IP or a token
	// Arrival marks a viewer being sent now (a listener's redirect or relay): Resolve and
	// Copies count it on the chosen origin until that origin's next heartbeat reports its
	// own load, so a crowd arriving between two heartbeats does not all land on the origin
	// the last one showed least loaded. Questions (explain, a steering re-answer for a
	// viewer already playing) leave it unset.
	Arrival bool
}

// Outcome says whether a request found an origin; the zero value is none of them.
type Outcome uint8

// Outcomes.
const (
	OK          Outcome = iota + 1 // an origin was chosen
	NotFound                       // no origin lists the name
	Unavailable                    // listed, but no listing origin is eligible
)

var outcomeNames = [...]string{"invalid", "ok", "not_found", "unavailable"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "invalid"
}

// MarshalText makes an Outcome read as its name in JSON.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Route says which kind of copy of a stream a viewer was sent to; the zero value is none
// (not OK, or a publisher placed by Place).
type Route uint8

// Routes.
const (
	RouteOwner    Route = iota + 1 // an origin running the stream as its publisher's origin
	RouteRelay                     // an origin already relaying the stream (cluster pull-through)
	RouteNewRelay                  // an origin not carrying the stream yet, which will pull it from the cluster
	RouteOnDemand                  // an origin listing the stream on demand
)

var routeNames = [...]string{"", "owner", "relay", "new_relay", "ondemand"}

// spilledNames are the routes' names with the spilled mark, so logging allocates nothing.
var spilledNames = [...]string{"", "owner/spilled", "relay/spilled", "new_relay/spilled", "ondemand/spilled"}

func (r Route) String() string {
	if int(r) < len(routeNames) {
		return routeNames[r]
	}
	return "invalid"
}

// MarshalText makes a Route read as its name in JSON.
func (r Route) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Result is the answer to a Request; OriginID, BaseURL and Scheme are set only when Outcome is OK.
type Result struct {
	Outcome  Outcome `json:"outcome"`
	OriginID string  `json:"origin_id,omitempty"`
	BaseURL  string  `json:"base_url,omitempty"` // scheme://host[:port] without a trailing slash, from cluster.Origin.Public
	Scheme   string  `json:"scheme,omitempty"`
	// PrivateURL is BaseURL with the host swapped for the origin's private address (its
	// `private` key), for the gateway's own connections to the origin (relays); "" when
	// the origin announced none.
	PrivateURL string `json:"private_url,omitempty"`
	// Route is the kind of copy chosen (owner, relay, new relay, on demand); Spilled says the
	// owners were at or over balance.spill_at (or none was eligible), so the viewer was
	// sent past them when a relay could take it. Both are set by Resolve only.
	Route   Route `json:"route,omitempty"`
	Spilled bool  `json:"spilled,omitempty"`
}

// RouteLog is the route as listeners log it: "owner", "relay", "new_relay" or "ondemand",
// with "/spilled" appended when Spilled; "" when no route was taken.
func (r Result) RouteLog() string {
	if int(r.Route) >= len(routeNames) {
		return "invalid"
	}
	if r.Spilled {
		return spilledNames[r.Route]
	}
	return routeNames[r.Route]
}

// DialURL is the base URL the gateway itself connects to: the private one when the origin
// has one (public addresses may only work from outside, e.g. localhost behind Docker).
func (r Result) DialURL() string {
	if r.PrivateURL != "" {
		return r.PrivateURL
	}
	return r.BaseURL
}

// DefaultHysteresis is the utilization margin config (balance.hysteresis) starts from.
const DefaultHysteresis = 0.10

// DefaultSpillAt is the utilization config (balance.spill_at) starts from.
const DefaultSpillAt = 0.8

// Options tune a Table.
type Options struct {
	// Hysteresis is how much lower (utilization, 0..1) the second rendezvous candidate must be
	// before it takes a viewer from the first. 0 means none: config owns the default
	// (DefaultHysteresis); a negative or NaN value also means 0.
	Hysteresis float64
	// SpillAt is the utilization (0..1] from which a stream's viewers spill over to relay
	// origins (cluster pull-through): when the owner chosen for a viewer is at or above it, the
	// viewer goes to a relay of the stream under it, else to a new relay. 0 means never spill:
	// config owns the default (DefaultSpillAt); a negative or NaN value also means 0.
	SpillAt float64
}

// nShards spreads stream names over independent locks; a power of two indexed by the top hash bits.
const nShards = 256

// Table is the gateway's in-memory index NAME -> origins, fed through cluster.Sink and read by Resolve.
// Writers are serialized; any number of readers may run alongside. Create it with New.
type Table struct {
	hysteresis float64
	spillAt    float64
	shards     [nShards]shard

	wmu  sync.Mutex   // serializes writers (the Sink contract promises one, this makes it cheap to be sure)
	omu  sync.RWMutex // guards byID for readers; only writers holding wmu change it
	byID map[string]*origin

	streams atomic.Int64 // distinct names
	entries atomic.Int64 // (name, origin) pairs
}

type shard struct {
	mu sync.RWMutex
	// m maps a name to the origins listing it. Entries are copied out and their slices are
	// copy-on-write, so readers keep them after unlocking; only writers (serialized by
	// Table.wmu) change m, so they read it unlocked.
	m map[string]entry
	_ [128 - 24 - 8]byte
}

// entry lists the origins of one name. Its slice is never changed in place: writers store a
// new entry. (Two refs inline in the map slot measured no faster and cost 28 B per entry more.)
type entry struct {
	list []ref
}

func (e *entry) len() int { return len(e.list) }

func (e *entry) at(i int) ref { return e.list[i] }

func (e *entry) indexOf(o *origin) int {
	for i := range e.list {
		if e.list[i].o == o {
			return i
		}
	}
	return -1
}

// refs returns a copy of the entry's refs.
func (e *entry) refs() []ref { return slices.Clone(e.list) }

// entryOf makes an entry of a slice the caller no longer uses, trimmed to its length.
func entryOf(refs []ref) entry {
	if cap(refs) != len(refs) {
		refs = slices.Clone(refs)
	}
	return entry{list: refs}
}

// ref is one origin listing a name.
type ref struct {
	o       *origin
	pos     uint32 // index of the name in o.names; only writers use it
	running bool   // else ondemand
	relay   bool   // running as a relay copy of another origin's stream (its upstream: origin.upstream)
}

// origin is a long-lived entry; its record changes by swapping snap, so heartbeats never touch the shards.
type origin struct {
	id     string
	idHash uint64
	snap   atomic.Pointer[snapshot]
	count  atomic.Int64 // len(names), for the admin view

	// names lists every name the origin carries, each the very string that keys the shard
	// map (one copy per name, shared by all its origins). Owned by the writer.
	names []string

	// ups maps each name the origin relays to the id of the origin it pulls it from
	// (cluster.Stream.Upstream); nil while it relays nothing. Kept beside the refs rather than
	// in them: only the admin views read it, and a ref stays 16 bytes.
	umu sync.RWMutex
	ups map[string]string

	// metas maps each running name the origin announced a description for (codecs, size,
	// bitrate: cluster.StreamMeta) to it; nil while there is none. Kept beside the refs
	// rather than in them: only steering's multivariant playlist reads it, and a ref stays
	// 16 bytes. The descriptions are immutable: a change stores a new one.
	mmu   sync.RWMutex
	metas map[string]*cluster.StreamMeta
}

// upstream is the origin o pulls name from, or "".
func (o *origin) upstream(name string) string {
	o.umu.RLock()
	defer o.umu.RUnlock()
	return o.ups[name]
}

// setUpstream records (up != "") or forgets (up == "") o's upstream for name; key is the
// name's canonical string. Writers only.
func (o *origin) setUpstream(key, up string) {
	o.umu.Lock()
	defer o.umu.Unlock()
	switch {
	case up != "":
		if o.ups == nil {
			o.ups = map[string]string{}
		}
		o.ups[key] = up
	case o.ups != nil:
		delete(o.ups, key)
		if len(o.ups) == 0 {
			o.ups = nil
		}
	}
}

// meta is o's description of name, or the zero value.
func (o *origin) meta(name string) cluster.StreamMeta {
	o.mmu.RLock()
	m := o.metas[name]
	o.mmu.RUnlock()
	if m == nil {
		return cluster.StreamMeta{}
	}
	return *m
}

// setMeta records (m != nil) or forgets o's description of name; key is the name's
// canonical string. Writers only.
func (o *origin) setMeta(key string, m *cluster.StreamMeta) {
	o.mmu.Lock()
	defer o.mmu.Unlock()
	switch {
	case m != nil:
		if o.metas == nil {
			o.metas = map[string]*cluster.StreamMeta{}
		}
		o.metas[key] = m
	case o.metas != nil:
		delete(o.metas, key)
		if len(o.metas) == 0 {
			o.metas = nil
		}
	}
}

// sameMeta reports whether o's description of name is m.
func (o *origin) sameMeta(name string, m *cluster.StreamMeta) bool {
	o.mmu.RLock()
	cur := o.metas[name]
	o.mmu.RUnlock()
	if cur == nil || m == nil {
		return cur == m
	}
	return *cur == *m
}

// snapshot is an immutable digest of one origin record.
type snapshot struct {
	rec  cluster.Origin
	up   bool
	gone bool // dropped from the table (readers in flight may still hold it)

	// The load terms as the record reported them. Read them through full, fill and util,
	// which add the viewers this gateway sent since (sent).
	fullBW     bool    // egress at max_bandwidth
	maxClients int64   // capacity.max_clients, 0 = none
	perClient  float64 // 1/max_clients, 0 = none
	clientFill float64 // clients/max_clients
	bwFill     float64 // egress/max_bandwidth
	cpu        float64

	// sent counts the viewers Resolve sent to the origin since this snapshot: the origin
	// reports them only in its next heartbeat, and a crowd arriving in between would all
	// land on the origin the last heartbeat showed least loaded, past its capacity. A new
	// snapshot (the next heartbeat, which counts them itself) starts again from 0.
	sent atomic.Int64

	urls [len(schemeNames)]string
	priv [len(schemeNames)]string // urls with the private host, or ""
}

// schemeNames index public URLs: protocol p uses 2p (plain) and 2p+1 (secure).
var schemeNames = [...]string{"http", "https", "rtsp", "rtsps", "rtmp", "rtmps"}

// New returns an empty Table.
func New(opts Options) *Table {
	h := opts.Hysteresis
	if !(h > 0) { // negative or NaN
		h = 0
	}
	sp := opts.SpillAt
	if !(sp > 0) {
		sp = 0
	}
	t := &Table{hysteresis: h, spillAt: sp, byID: make(map[string]*origin)}
	for i := range t.shards {
		t.shards[i].m = make(map[string]entry)
	}
	return t
}

// newSnapshot digests rec; prev, when given, lends its URLs if they did not change, so
// that a heartbeat costs two allocations instead of re-parsing every URL.
func newSnapshot(rec cluster.Origin, prev *snapshot) *snapshot {
	s := &snapshot{rec: rec}
	if prev != nil && maps.Equal(prev.rec.Public, rec.Public) && prev.rec.Private == rec.Private {
		s.rec.Public, s.urls, s.priv = prev.rec.Public, prev.urls, prev.priv // immutable, so shared
	} else {
		s.rec.Public = maps.Clone(rec.Public)
		for i, sch := range schemeNames {
			// A URL that is not a bare base URL never reaches a Location header.
			if u, ok := rec.Public[sch]; ok && cluster.ValidatePublicURL(sch, u) == nil {
				s.urls[i] = strings.TrimSuffix(u, "/")
				s.priv[i] = withHost(sch, s.urls[i], rec.Private)
			}
		}
	}
	s.up = rec.State == cluster.StateUp
	l, c := rec.Load, rec.Capacity
	s.fullBW = c.MaxBandwidthBps > 0 && l.EgressBps >= c.MaxBandwidthBps
	if c.MaxClients > 0 {
		s.maxClients = c.MaxClients
		s.perClient = 1 / float64(c.MaxClients)
		s.clientFill = float64(l.Clients) / float64(c.MaxClients)
	}
	if c.MaxBandwidthBps > 0 {
		s.bwFill = float64(l.EgressBps) / float64(c.MaxBandwidthBps)
	}
	s.cpu = cluster.Capacity{}.Utilization(cluster.Load{CPU: l.CPU})
	return s
}

// full reports whether the origin is at its declared capacity: clients (with the viewers
// sent since the record) or bandwidth.
func (s *snapshot) full() bool {
	return s.fullBW || (s.maxClients > 0 && s.rec.Load.Clients+s.sent.Load() >= s.maxClients)
}

// fill is the highest declared capacity term alone (clients/max_clients, with the viewers
// sent since the record; egress/max_bandwidth), 0 when the origin declares none. Spill-over
// compares fill, not util: CPU is shared with whatever else runs on the machine, and a relay
// on a busy machine is no remedy for it, while a declared capacity is exactly what a relay adds.
func (s *snapshot) fill() float64 {
	return max(s.clientFill+float64(s.sent.Load())*s.perClient, s.bwFill)
}

// util is the highest of CPU and the declared capacity terms: it balances between copies.
func (s *snapshot) util() float64 { return max(s.fill(), s.cpu) }

// why a listing origin is not eligible.
type why uint8

const (
	eligible why = iota
	notUp
	full
	noURL
)

// check says whether s may take a new viewer of p, and with which scheme index.
func (s *snapshot) check(p Proto, secure bool) (int, why) {
	if !s.up {
		return -1, notUp
	}
	if s.full() {
		return -1, full
	}
	if int(p) >= len(protoNames) {
		return -1, noURL
	}
	want, other := 2*int(p), 2*int(p)+1
	if secure {
		want, other = other, want
	}
	if s.urls[want] != "" {
		return want, eligible
	}
	if s.urls[other] != "" {
		return other, eligible
	}
	return -1, noURL
}

// Hashing is FNV-1a 64 finished with splitmix64, written out so that every gateway
// (and every version) orders origins alike and the hot path does not allocate.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvAdd(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// keys returns the rendezvous key of the name alone and of (name, client).
func keys(name, client string) (nameKey, clientKey uint64) {
	h := fnvAdd(fnvOffset, name)
	nameKey = mix(h)
	// 0xff cannot occur in UTF-8, so it separates name from client.
	h ^= 0xff
	h *= fnvPrime
	clientKey = mix(fnvAdd(h, client))
	return nameKey, clientKey
}

func idHash(id string) uint64 { return mix(fnvAdd(fnvOffset, id)) }

// score is the rendezvous weight of an origin for a key.
func score(key, id uint64) uint64 { return mix(key ^ id) }

func (t *Table) shardOf(name string) *shard {
	return &t.shards[mix(fnvAdd(fnvOffset, name))>>56]
}

func (t *Table) lookup(nameKey uint64, name string) entry {
	sh := &t.shards[nameKey>>56]
	sh.mu.RLock()
	e := sh.m[name]
	sh.mu.RUnlock()
	return e
}

// pick is one eligible origin as seen by decide.
type pick struct {
	o      *origin
	s      *snapshot
	scheme int
	score  uint64
}

// beats orders by score, then by ID so that equal scores still choose alike everywhere.
func (p *pick) beats(q *pick) bool {
	if q.o == nil {
		return true
	}
	if p.score != q.score {
		return p.score > q.score
	}
	return p.o.id < q.o.id
}

// decision is what decide found; Explain reads the same fields Resolve does.
type decision struct {
	first, second pick // top two running owners by (name, client) rendezvous
	ondemand      pick // top ondemand by name rendezvous
	relay         pick // top eligible relay under spill_at by name rendezvous
	anyRelay      pick // top eligible relay by name rendezvous, whatever its load
	spill         pick // new relay: top origin not listing the name, under spill_at, by name rendezvous
	running       int  // eligible running owners
	relays        int  // eligible relays
	onDemand      int  // eligible ondemand origins
	spilled       bool // the owner choice was at or above spill_at (or there was none eligible)
	which         choice
}

// choice names which pick was taken; an index rather than a pointer keeps decision copyable.
type choice uint8

const (
	none choice = iota
	tookFirst
	tookSecond
	tookOnDemand
	tookRelay    // an existing relay under spill_at
	tookSpill    // a new relay
	tookAnyRelay // an existing relay over spill_at, no owner being eligible
)

// chosen returns the pick taken, or nil.
func (d *decision) chosen() *pick {
	switch d.which {
	case tookFirst:
		return &d.first
	case tookSecond:
		return &d.second
	case tookOnDemand:
		return &d.ondemand
	case tookRelay:
		return &d.relay
	case tookSpill:
		return &d.spill
	case tookAnyRelay:
		return &d.anyRelay
	}
	return nil
}

// decide applies section 4 of the design to one name's origins, with spill-over to relays
// (README, "Cluster pull-through"). snaps, when given, holds the snapshots to use (Explain
// shows the same ones it decided on); else they are loaded here.
func (t *Table) decide(e *entry, snaps []*snapshot, req Request, nameKey, clientKey uint64) decision {
	var d decision
	listed := false // some origin runs the name (owner or relay), eligible or not
	for i, n := 0, e.len(); i < n; i++ {
		r := e.at(i)
		var s *snapshot
		if snaps != nil {
			s = snaps[i]
		} else {
			s = r.o.snap.Load()
		}
		if r.running {
			listed = true
		}
		sch, w := s.check(req.Proto, req.Secure)
		if w != eligible {
			continue
		}
		switch {
		case r.relay:
			d.relays++
			p := pick{o: r.o, s: s, scheme: sch, score: score(nameKey, r.o.idHash)}
			if p.beats(&d.anyRelay) {
				d.anyRelay = p
			}
			if t.spillAt > 0 && s.fill() < t.spillAt && p.beats(&d.relay) {
				d.relay = p
			}
		case r.running:
			d.running++
			p := pick{o: r.o, s: s, scheme: sch, score: score(clientKey, r.o.idHash)}
			if p.beats(&d.first) {
				d.second, d.first = d.first, p
			} else if p.beats(&d.second) {
				d.second = p
			}
		default:
			d.onDemand++
			p := pick{o: r.o, s: s, scheme: sch, score: score(nameKey, r.o.idHash)}
			if p.beats(&d.ondemand) {
				d.ondemand = p
			}
		}
	}
	switch {
	case d.running >= 2:
		d.which = tookFirst
		// Power of two choices, with a margin so that a viewer does not flap between two origins.
		if d.first.s.util()-d.second.s.util() > t.hysteresis {
			d.which = tookSecond
		}
	case d.running == 1:
		d.which = tookFirst
	}
	if !listed {
		if d.onDemand > 0 {
			d.which = tookOnDemand
		}
		return d
	}
	if t.spillAt > 0 && (d.which == none || d.chosen().s.fill() >= t.spillAt) {
		d.spilled = true
		if d.relay.o != nil {
			d.which = tookRelay
			return d
		}
		t.spillPick(e, &d, req, nameKey)
		if d.spill.o != nil {
			d.which = tookSpill
			return d
		}
	}
	if d.which == none {
		switch {
		case d.relays > 0:
			d.which = tookAnyRelay
		case d.onDemand > 0:
			d.which = tookOnDemand
		}
	}
	return d
}

// spillPick finds a new relay for the name: the origin with the highest rendezvous score on
// the name among those that do not list it, can take the viewer and are under spill_at, so
// that every gateway sends a stream's overflow to the same few origins.
func (t *Table) spillPick(e *entry, d *decision, req Request, nameKey uint64) {
	t.omu.RLock()
	defer t.omu.RUnlock()
	for _, o := range t.byID {
		if e.indexOf(o) >= 0 {
			continue
		}
		s := o.snap.Load()
		sch, w := s.check(req.Proto, req.Secure)
		if w != eligible || s.fill() >= t.spillAt {
			continue
		}
		p := pick{o: o, s: s, scheme: sch, score: score(nameKey, o.idHash)}
		if p.beats(&d.spill) {
			d.spill = p
		}
	}
}

// Resolve chooses the origin for req. It does not allocate.
func (t *Table) Resolve(req Request) Result {
	nameKey, clientKey := keys(req.Name, req.Client)
	e := t.lookup(nameKey, req.Name)
	if e.len() == 0 {
		return Result{Outcome: NotFound}
	}
	d := t.decide(&e, nil, req, nameKey, clientKey)
	d.count(req)
	return d.result()
}

// count adds the viewer to the chosen origin's load until its next heartbeat.
func (d *decision) count(req Request) {
	if c := d.chosen(); c != nil && req.Arrival {
		c.s.sent.Add(1)
	}
}

func (d *decision) result() Result {
	c := d.chosen()
	if c == nil {
		return Result{Outcome: Unavailable}
	}
	r := c.s.result(c.o.id, c.scheme)
	r.Route, r.Spilled = d.route(), d.spilled
	return r
}

// route names the kind of copy decide took.
func (d *decision) route() Route {
	switch d.which {
	case tookFirst, tookSecond:
		return RouteOwner
	case tookRelay, tookAnyRelay:
		return RouteRelay
	case tookSpill:
		return RouteNewRelay
	case tookOnDemand:
		return RouteOnDemand
	}
	return 0
}

// result is the OK answer for scheme index sch of this origin.
func (s *snapshot) result(id string, sch int) Result {
	return Result{Outcome: OK, OriginID: id, BaseURL: s.urls[sch], Scheme: schemeNames[sch], PrivateURL: s.priv[sch]}
}

// withHost swaps the host of base for private (a host name or address; a port on it is
// ignored: the public URL's port is kept). "" when there is no usable private address.
func withHost(scheme, base, private string) string {
	if private == "" {
		return ""
	}
	if h, _, err := net.SplitHostPort(private); err == nil {
		private = h
	}
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	host := private
	if p := u.Port(); p != "" {
		host = net.JoinHostPort(private, p)
	} else if strings.Contains(private, ":") {
		host = "[" + private + "]"
	}
	out := scheme + "://" + host
	if cluster.ValidatePublicURL(scheme, out) != nil {
		return ""
	}
	return out
}
