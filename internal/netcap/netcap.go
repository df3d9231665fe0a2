// Package netcap caps a listener's concurrent connections, in all and per client address,
// closing the excess at once instead of queueing it.
package netcap

import (
	"container/list"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxPerIP is the per-client-address cap the listeners use when not told otherwise.
// A player holds one connection to a listener (a redirect, or a relayed session), so 256 is
// far above what an office or a campus behind one NAT address opens at once, while one host
// can take at most 256 of a listener's slots (2.5% of the gateway's 10,000).
const DefaultMaxPerIP = 256

// DefaultEvictSilentAfter is the EvictSilentAfter the listeners use: a client that means to
// talk sends its first bytes within a round trip of connecting.
const DefaultEvictSilentAfter = time.Second

// Reasons a connection is refused, as handed to OnReject (and logged and counted).
const (
	ReasonMaxConns      = "max_conns"        // the listener holds Max connections
	ReasonMaxConnsPerIP = "max_conns_per_ip" // the client's address holds MaxPerIP connections
	ReasonFirstByte     = "first_byte"       // nothing received within FirstByteTimeout
	ReasonEvicted       = "evicted_silent"   // silent, closed to make room for a new connection at Max
)

// Listener accepts at most Max concurrent connections, and at most MaxPerIP from one client
// address (0: no per-address cap); the ones over a cap are handed to OnReject (if set) with
// the reason and closed. Wrap, if set, wraps every connection it lets through.
// FirstByteTimeout, if set, closes a connection that has delivered no byte to its reader
// that long after accept, whatever read deadlines its server sets (OnReject is told, with
// ReasonFirstByte).
//
// EvictSilentAfter, if set, keeps a full listener open to new clients: when a connection
// arrives at Max, the oldest connection that has delivered no byte for at least that long is
// closed (OnReject is told, with ReasonEvicted) and the new one takes its place; only when
// there is none is the new one refused. Idle connections can then hold a full listener only
// for EvictSilentAfter at a time, not until their server's first-request deadline.
// Settings must not change after the first Accept.
type Listener struct {
	net.Listener
	Max              int64
	MaxPerIP         int64
	FirstByteTimeout time.Duration
	EvictSilentAfter time.Duration
	OnReject         func(c net.Conn, reason string)
	Wrap             func(net.Conn) net.Conn

	active   atomic.Int64
	rejected atomic.Int64
	mu       sync.Mutex
	perIP    map[string]int64
	silent   list.List // *conn that have delivered no byte yet, oldest first (with EvictSilentAfter)
}

// Accept returns the next connection under the caps.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := ""
		if l.MaxPerIP > 0 {
			ip = RemoteIP(c)
		}
		reason := l.admit(ip)
		if reason == ReasonMaxConns && l.evictSilent() {
			reason = l.admit(ip)
		}
		if reason != "" {
			l.reject(c, reason)
			c.Close()
			continue
		}
		cc := &conn{Conn: c, l: l, ip: ip, since: time.Now()}
		if l.EvictSilentAfter > 0 {
			l.mu.Lock()
			cc.elem = l.silent.PushBack(cc)
			l.mu.Unlock()
		}
		if l.FirstByteTimeout > 0 {
			cc.timer = time.AfterFunc(l.FirstByteTimeout, cc.firstByteExpired)
		}
		var out net.Conn = cc
		if l.Wrap != nil {
			out = l.Wrap(out)
		}
		return out, nil
	}
}

// admit counts a new connection from ip ("" when not capped per address), or says why not.
func (l *Listener) admit(ip string) string {
	if l.active.Add(1) > l.Max {
		l.active.Add(-1)
		return ReasonMaxConns
	}
	if ip == "" {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[ip] >= l.MaxPerIP {
		l.active.Add(-1)
		return ReasonMaxConnsPerIP
	}
	if l.perIP == nil {
		l.perIP = map[string]int64{}
	}
	l.perIP[ip]++
	return ""
}

func (l *Listener) release(ip string) {
	l.active.Add(-1)
	if ip == "" {
		return
	}
	l.mu.Lock()
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
	l.mu.Unlock()
}

// evictSilent closes the oldest connection silent for EvictSilentAfter, if any.
func (l *Listener) evictSilent() bool {
	if l.EvictSilentAfter <= 0 {
		return false
	}
	for {
		l.mu.Lock()
		e := l.silent.Front()
		if e == nil || time.Since(e.Value.(*conn).since) < l.EvictSilentAfter {
			l.mu.Unlock()
			return false
		}
		c := l.silent.Remove(e).(*conn)
		c.elem = nil
		l.mu.Unlock()
		if c.got.CompareAndSwap(false, true) { // else its first byte just arrived: it stays
			c.abort(ReasonEvicted)
			return true
		}
	}
}

// unsilence takes c off the eviction list.
func (l *Listener) unsilence(c *conn) {
	l.mu.Lock()
	if c.elem != nil {
		l.silent.Remove(c.elem)
		c.elem = nil
	}
	l.mu.Unlock()
}

func (l *Listener) reject(c net.Conn, reason string) {
	l.rejected.Add(1)
	if l.OnReject != nil {
		l.OnReject(c, reason)
	}
}

// Active is the number of open connections.
func (l *Listener) Active() int64 { return l.active.Load() }

// ActiveFrom is the number of open connections from one client address (as RemoteIP gives
// it); always 0 without MaxPerIP.
func (l *Listener) ActiveFrom(ip string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perIP[ip]
}

// Rejected is the number of connections closed for being over a cap or silent past
// FirstByteTimeout.
func (l *Listener) Rejected() int64 { return l.rejected.Load() }

type conn struct {
	net.Conn
	l     *Listener
	ip    string
	once  sync.Once
	timer *time.Timer // FirstByteTimeout, until the first byte is read
	got   atomic.Bool // a byte was read, or the connection was refused for silence
	since time.Time
	elem  *list.Element // on l.silent; guarded by l.mu
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.got.Load() && c.got.CompareAndSwap(false, true) {
		if c.timer != nil {
			c.timer.Stop()
		}
		c.l.unsilence(c)
	}
	return n, err
}

func (c *conn) firstByteExpired() {
	if c.got.CompareAndSwap(false, true) { // nothing read: refuse it
		c.abort(ReasonFirstByte)
	}
}

// abort refuses a connection that stayed silent; the caller won c.got.
func (c *conn) abort(reason string) {
	c.l.unsilence(c)
	c.l.reject(c.Conn, reason)
	// Not Close: that reads c.timer, which Accept may still be storing.
	c.once.Do(func() { c.l.release(c.ip) })
	_ = c.Conn.Close()
}

func (c *conn) Close() error {
	c.once.Do(func() {
		if c.timer != nil {
			c.timer.Stop()
		}
		c.l.unsilence(c)
		c.l.release(c.ip)
	})
	return c.Conn.Close()
}
