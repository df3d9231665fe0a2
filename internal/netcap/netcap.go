// Package netcap caps a listener's concurrent connections, closing the excess at once instead of queueing it.
package netcap

import (
	"net"
	"sync"
	"sync/atomic"
)

// Listener accepts at most Max concurrent connections; the ones over the cap are handed to
// OnReject (if set) and closed. Wrap, if set, wraps every connection it lets through.
type Listener struct {
	net.Listener
	Max      int64
	OnReject func(net.Conn)
	Wrap     func(net.Conn) net.Conn

	active   atomic.Int64
	rejected atomic.Int64
}

// Accept returns the next connection under the cap.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.active.Add(1) > l.Max {
			l.active.Add(-1)
			l.rejected.Add(1)
			if l.OnReject != nil {
				l.OnReject(c)
			}
			c.Close()
			continue
		}
		var out net.Conn = &conn{Conn: c, l: l}
		if l.Wrap != nil {
			out = l.Wrap(out)
		}
		return out, nil
	}
}

// Active is the number of open connections.
func (l *Listener) Active() int64 { return l.active.Load() }

// Rejected is the number of connections closed for being over the cap.
func (l *Listener) Rejected() int64 { return l.rejected.Load() }

type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() { c.l.active.Add(-1) })
	return c.Conn.Close()
}
