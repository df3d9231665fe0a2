package netcap

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Group is the one accept/track loop every listener shares: Serve accepts from a listener and
// runs serve for each connection on its own goroutine; every connection (and any other the
// listener Tracks, such as its own dials to origins) is remembered so that Close can close
// it, and Close returns when every goroutine the Group started is done. The zero value is
// ready to use.
type Group struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	lns   []net.Listener
	wg    sync.WaitGroup
	done  bool
}

// Serve starts accepting from ln in the background; serve owns the connection until it
// returns, then the Group closes it.
func (g *Group) Serve(ln net.Listener, serve func(net.Conn)) {
	g.mu.Lock()
	g.lns = append(g.lns, ln)
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !g.Track(c) {
				c.Close()
				return
			}
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				defer func() {
					g.Untrack(c)
					c.Close()
				}()
				serve(c)
			}()
		}
	}()
}

// Track registers c so that Close closes it; false (and c untouched) once Close has begun.
func (g *Group) Track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return false
	}
	if g.conns == nil {
		g.conns = map[net.Conn]struct{}{}
	}
	g.conns[c] = struct{}{}
	return true
}

// Untrack forgets c (its owner closes it).
func (g *Group) Untrack(c net.Conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// Close stops the accept loops, closes every tracked connection and waits for every
// goroutine the Group started. It may be called more than once.
func (g *Group) Close() {
	g.mu.Lock()
	if g.done {
		g.mu.Unlock()
		g.wg.Wait()
		return
	}
	g.done = true
	for c := range g.conns {
		c.Close()
	}
	lns := g.lns
	g.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	g.wg.Wait()
}

// RejectLog is an OnReject for Listener that logs refusals at most once a second, with how
// many there were since the last line (in all and by reason), and hands each one to count
// (it may be nil) with its reason.
type RejectLog struct {
	Logger *slog.Logger
	Msg    string // e.g. "rtmp connections refused"
	Count  func(reason string)

	n    [nReasons]atomic.Int64
	last atomic.Int64
}

var reasons = [...]string{ReasonMaxConns, ReasonMaxConnsPerIP, ReasonEvicted, ReasonFirstByte}

const nReasons = len(reasons)

// Reject is the Listener.OnReject hook.
func (r *RejectLog) Reject(c net.Conn, reason string) {
	if r.Count != nil {
		r.Count(reason)
	}
	i := 0
	for i < nReasons-1 && reasons[i] != reason {
		i++
	}
	r.n[i].Add(1)
	now := time.Now().UnixNano()
	last := r.last.Load()
	if now-last < int64(time.Second) || !r.last.CompareAndSwap(last, now) {
		return
	}
	attrs := make([]any, 0, 4+2*nReasons)
	attrs = append(attrs, "remote", c.RemoteAddr().String(), "reason", reason)
	var total int64
	for i := range r.n {
		if v := r.n[i].Swap(0); v > 0 {
			total += v
			attrs = append(attrs, reasons[i], v)
		}
	}
	attrs = append(attrs, "count", total)
	r.Logger.Warn(r.Msg, attrs...)
}

// RemoteIP is the client address of c without its port, IPv4-mapped addresses unmapped.
func RemoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap().String()
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}
