package httpgw

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The listener's own HTTP/1.1 server: a goroutine per connection reading request heads from
// a bufio.Reader (parse.go), answering from prepared bytes, keep-alive and pipelining (the
// answers to requests already buffered are written together), HEAD, Connection: close,
// HTTP/1.0, a header deadline from the first byte of each request (from accept for the
// first), an idle deadline between requests and a write deadline per flush. A request with
// a body is answered and the connection closed: nothing here reads bodies. A malformed head
// is answered 400/431/505 and the connection closed after a short linger. Measured with
// make bench-http, the same gateway on net/http took 65 µs of CPU per keep-alive redirect,
// on this server 37 µs (README, "Redirect performance").

const (
	readBufSize = 4 << 10 // longer lines are assembled in parser.long, up to the head limit
	headSlack   = 4 << 10 // as net/http: MaxHeaderBytes plus 4 KiB
	flushAt     = 4 << 10 // pipelined answers are written once this much is pending
	lingerFor   = 500 * time.Millisecond
	lingerBytes = 256 << 10
)

// wire is the HTTP/1.1 server of one Server.
type wire struct {
	h       *handler
	log     *slog.Logger
	ln      net.Listener
	header  time.Duration
	idle    time.Duration
	write   time.Duration
	limit   int
	pre     [nOutcomes][]byte // status line and fixed headers per outcome; oOK's ends in "Location: "
	closing atomic.Bool
	mu      sync.Mutex
	conns   map[*wconn]struct{}
	wg      sync.WaitGroup
	date    atomic.Pointer[dateLine]
}

type dateLine struct {
	sec  int64
	line []byte
}

// Connection states, for Close: an idle connection is closed at once, an active one finishes.
const (
	stateIdle int32 = iota
	stateActive
	stateClosed
)

type wconn struct {
	c     net.Conn
	state atomic.Int32
}

type connBufs struct {
	br  *bufio.Reader
	out []byte
	p   parser
	hd  head
}

var bufsPool = sync.Pool{New: func() any { return &connBufs{br: bufio.NewReaderSize(nil, readBufSize)} }}

func newWire(h *handler, log *slog.Logger, ln net.Listener, header, idle, write time.Duration, maxHeader int) *wire {
	w := &wire{h: h.prepared(), log: log, ln: ln, header: header, idle: idle, write: write,
		limit: maxHeader + headSlack, conns: map[*wconn]struct{}{}}
	fixed := "Cache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\n"
	text := "Content-Type: " + contentText + "\r\nX-Content-Type-Options: nosniff\r\n"
	for oc := range nOutcomes {
		var s string
		switch oc {
		case oOK:
			s = "HTTP/1.1 302 Found\r\n" + fixed + "Content-Length: 0\r\nLocation: "
		case oPreflight:
			s = "HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: " + allow +
				"\r\nAccess-Control-Allow-Headers: *\r\nAccess-Control-Max-Age: " + corsMaxAge + "\r\nAllow: " + allow + "\r\n"
		case oMethodNotAllowed:
			s = "HTTP/1.1 405 Method Not Allowed\r\nAllow: " + allow + "\r\n" + fixed + text
		case oBadRequest:
			continue
		case oMultivariant, oSteering, oSteeringMove:
			s = "HTTP/1.1 200 OK\r\n" + fixed + "Content-Type: " + oc.contentType() + "\r\n"
		default:
			st := statusOf(oc)
			s = "HTTP/1.1 " + strconv.Itoa(st) + " " + http.StatusText(st) + "\r\n" + fixed + text
			if oc == oUnavailable {
				s += "Retry-After: " + h.retryAfter[0] + "\r\n"
			}
		}
		if b := oc.body(); b != nil {
			s += "Content-Length: " + strconv.Itoa(len(b)) + "\r\n"
		}
		w.pre[oc] = []byte(s)
	}
	return w
}

func statusOf(oc outcome) int {
	switch oc {
	case oNotFound, oBadPath:
		return http.StatusNotFound
	case oUnavailable:
		return http.StatusServiceUnavailable
	case oBadQuery:
		return http.StatusBadRequest
	case oBadOrigin:
		return http.StatusBadGateway
	case oUnauthorized:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

// serve accepts until the listener is closed.
func (w *wire) serve() {
	var backoff time.Duration
	for {
		c, err := w.ln.Accept()
		if err != nil {
			if w.closing.Load() {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// fd exhaustion, ECONNABORTED: retry, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			w.log.Warn("http server", "message", "Accept error: "+err.Error()+"; retrying in "+backoff.String())
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		wc := &wconn{c: c}
		w.mu.Lock()
		if w.closing.Load() {
			w.mu.Unlock()
			c.Close()
			continue
		}
		w.conns[wc] = struct{}{}
		w.wg.Add(1)
		w.mu.Unlock()
		go w.serveConn(wc, time.Now())
	}
}

// shutdown stops accepting, closes idle connections, lets active ones finish until ctx-like
// timeout d, then closes the rest; it returns when every connection goroutine has ended.
func (w *wire) shutdown(d time.Duration) {
	w.closing.Store(true)
	_ = w.ln.Close()
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		w.mu.Lock()
		for wc := range w.conns {
			if wc.state.CompareAndSwap(stateIdle, stateClosed) {
				_ = wc.c.Close()
			}
		}
		w.mu.Unlock()
		select {
		case <-done:
			return
		case <-deadline.C:
			w.mu.Lock()
			for wc := range w.conns {
				wc.state.Store(stateClosed)
				_ = wc.c.Close()
			}
			w.mu.Unlock()
			<-done
			return
		case <-tick.C:
		}
	}
}

func (w *wire) serveConn(wc *wconn, accepted time.Time) {
	c := wc.c
	b := bufsPool.Get().(*connBufs)
	defer func() {
		if v := recover(); v != nil {
			w.log.Error("http server", "message", "panic serving "+c.RemoteAddr().String(), "panic", v)
		}
		_ = c.Close()
		b.br.Reset(nil)
		if cap(b.out) <= 64<<10 && cap(b.p.long) <= 64<<10 {
			bufsPool.Put(b)
		}
		w.mu.Lock()
		delete(w.conns, wc)
		w.mu.Unlock()
		w.wg.Done()
	}()
	_ = c.SetReadDeadline(accepted.Add(w.header))
	secure := false
	if tc, ok := c.(*tls.Conn); ok {
		_ = c.SetWriteDeadline(accepted.Add(w.header))
		if err := tc.Handshake(); err != nil {
			return // scanners and expired deadlines; net/http logged these at debug
		}
		secure = true
	}
	if !wc.state.CompareAndSwap(stateIdle, stateActive) {
		return
	}
	br := b.br
	br.Reset(c)
	b.p.limit = w.limit
	b.out = b.out[:0]
	remote := c.RemoteAddr().String()
	first := true
	var start time.Time // when the current request's first byte was there
	for {
		if !first {
			if br.Buffered() == 0 {
				if err := w.flush(c, b, start); err != nil {
					return
				}
				if !wc.state.CompareAndSwap(stateActive, stateIdle) {
					return
				}
				// Timed from the last request's start: a few microseconds early, one clock read less.
				_ = c.SetReadDeadline(start.Add(w.idle))
				if _, err := br.Peek(1); err != nil {
					return
				}
				if !wc.state.CompareAndSwap(stateIdle, stateActive) {
					return
				}
			}
			start = time.Now()
			_ = c.SetReadDeadline(start.Add(w.header))
		}
		hd := &b.hd
		err := b.p.parse(br, hd)
		if first {
			start, first = time.Now(), false
		}
		if err != nil {
			var he *headError
			if errors.As(err, &he) {
				w.refuse(c, b, he, remote, start)
			} else if errors.Is(err, bufio.ErrBufferFull) {
				w.refuse(c, b, errTooLarge, remote, start)
			} else if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				_ = w.flush(c, b, start)
			}
			return
		}
		keep := hd.keepAlive && !hd.body && !hd.expect && !w.closing.Load()
		var body []byte
		if hd.method == http.MethodOptions && hd.target == "*" {
			// As net/http: the server itself answers "OPTIONS *".
			b.out = append(b.out, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"...)
		} else {
			path, query := splitTarget(hd.target)
			rq := request{method: hd.method, path: path, query: query, remote: remote, tls: secure, xfp: hd.xfp, xff: hd.xff}
			a := w.h.serve(&rq, start)
			b.out = append(b.out, w.pre[a.oc]...)
			if a.oc == oOK {
				b.out = append(b.out, a.location...)
				b.out = append(b.out, '\r', '\n')
			}
			body = a.oc.body()
			if a.body != nil {
				body = a.body
				b.out = append(b.out, "Content-Length: "...)
				b.out = strconv.AppendInt(b.out, int64(len(body)), 10)
				b.out = append(b.out, '\r', '\n')
			}
		}
		b.out = w.appendDate(b.out, start)
		switch {
		case !keep:
			b.out = append(b.out, "Connection: close\r\n"...)
		case hd.minor == 0:
			b.out = append(b.out, "Connection: keep-alive\r\n"...)
		}
		b.out = append(b.out, '\r', '\n')
		if hd.method != http.MethodHead {
			b.out = append(b.out, body...)
		}
		if !keep {
			if w.flush(c, b, start) == nil && hd.body {
				linger(c)
			}
			return
		}
		if len(b.out) >= flushAt {
			if err := w.flush(c, b, start); err != nil {
				return
			}
		}
	}
}

// flush writes the pending answers, within the write timeout from start (the last request's).
func (w *wire) flush(c net.Conn, b *connBufs, start time.Time) error {
	if len(b.out) == 0 {
		return nil
	}
	_ = c.SetWriteDeadline(start.Add(w.write))
	_, err := c.Write(b.out)
	b.out = b.out[:0]
	return err
}

// refuse answers a malformed request and closes, reading what the client still sends for a
// moment so that the answer is not lost to a reset.
func (w *wire) refuse(c net.Conn, b *connBufs, he *headError, remote string, start time.Time) {
	w.h.count.inc[oBadRequest]()
	if w.log.Enabled(context.Background(), slog.LevelDebug) {
		_, client := remoteAddr(remote)
		w.log.Debug("http request", "client", client, "outcome", OutcomeBadRequest, "status", he.status, "error", he.reason,
			"duration", time.Since(start))
	}
	text := strconv.Itoa(he.status) + " " + http.StatusText(he.status)
	b.out = append(b.out, "HTTP/1.1 "+text+"\r\nContent-Type: "+contentText+"\r\nContent-Length: "+strconv.Itoa(len(text))+"\r\nConnection: close\r\n\r\n"+text...)
	if w.flush(c, b, start) == nil {
		linger(c)
	}
}

// linger reads and drops what the client still sends, briefly, before the connection is
// closed: closing with unread bytes resets it, and a reset can destroy the answer in flight.
func linger(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(lingerFor))
	_, _ = io.CopyN(io.Discard, c, lingerBytes)
}

// appendDate appends the Date header, formatted once a second.
func (w *wire) appendDate(out []byte, now time.Time) []byte {
	sec := now.Unix()
	d := w.date.Load()
	if d == nil || d.sec != sec {
		d = &dateLine{sec: sec, line: []byte("Date: " + now.UTC().Format(http.TimeFormat) + "\r\n")}
		w.date.Store(d)
	}
	return append(out, d.line...)
}
