package rtspgw

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/peergate/peergate/gateway/gwmetrics"
	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/shared/streamname"
)

// announce places a publisher and relays its session to the origin. It returns true when
// the connection was relayed (and is over); false with res filled when it was refused.
func (s *Server) announce(c net.Conn, f *framer, req *base.Request, client string, res *base.Response, cl *connLog) bool {
	outcome := func(code base.StatusCode, o string) {
		res.StatusCode, cl.outcome = code, o
		s.Metrics.Redirect(proto, o)
	}
	path, name, query, code, o := streamPath(req.URL)
	cl.name = name
	if code != 0 {
		outcome(code, o)
		return false
	}
	if s.Authorize != nil {
		if err := s.Authorize(name, query, client); err != nil {
			// 403, not 401: there is no RTSP authentication scheme to retry with.
			res.Header["Connection"] = base.HeaderValue{"close"}
			cl.err = fmt.Errorf("unauthorized: %w", err)
			outcome(base.StatusForbidden, OutcomeUnauthorized)
			return false
		}
	}
	t0 := time.Now()
	r := s.Resolver.Place(resolve.Request{Name: name, Proto: resolve.ProtoRTSP, Client: client})
	s.Metrics.ResolveDuration(proto, time.Since(t0))
	switch r.Outcome {
	case resolve.OK:
	case resolve.NotFound:
		outcome(base.StatusNotFound, OutcomeNotFound)
		return false
	case resolve.Unavailable:
		res.Header["Retry-After"] = base.HeaderValue{strconv.Itoa(int(s.RetryAfter / time.Second))}
		outcome(base.StatusServiceUnavailable, OutcomeUnavailable)
		return false
	default:
		outcome(base.StatusInternalServerError, OutcomeError)
		return false
	}
	cl.origin, cl.route = r.OriginID, r.RouteLog()
	// The gateway's own connection goes to the origin's private address when it has one.
	loc, ok := streamname.Location(r.DialURL(), path, query)
	var ou *base.URL
	if ok {
		var err error
		ou, err = base.ParseURL(loc)
		ok = err == nil
	}
	if !ok {
		res.Header["Connection"] = base.HeaderValue{"close"}
		outcome(base.StatusBadGateway, OutcomeBadOrigin)
		return false
	}

	cl.mode = gwmetrics.ModeRelay
	s.Metrics.RelayStart(proto, gwmetrics.RolePublish)
	failed := func(err error) bool {
		res.StatusCode, res.Header["Connection"] = base.StatusBadGateway, base.HeaderValue{"close"}
		cl.outcome, cl.err = OutcomeOriginFailed, err
		s.Metrics.RelayEnd(proto, gwmetrics.RolePublish, OutcomeOriginFailed)
		return false
	}
	oc, err := s.dial(ou)
	if err != nil {
		return failed(err)
	}
	if !s.track(oc) {
		oc.Close()
		return failed(net.ErrClosed)
	}
	defer func() {
		s.untrack(oc)
		oc.Close()
	}()
	fwd := *req
	fwd.URL = ou
	b, err := fwd.Marshal()
	if err == nil {
		_ = oc.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		_, err = oc.Write(b)
	}
	if err != nil {
		return failed(err)
	}

	// The pre-relay buffer may hold what the client sent after ANNOUNCE: keep it in front.
	pending, _ := f.br.Peek(f.br.Buffered())
	var in io.Reader = c
	if len(pending) > 0 {
		in = io.MultiReader(bytes.NewReader(bytes.Clone(pending)), c)
	}
	rl := &relay{
		s: s, client: c, origin: oc, path: path,
		gwBase: req.URL.Scheme + "://" + req.URL.Host,
		orBase: ou.Scheme + "://" + ou.Host,
		orURL:  ou,
	}
	rl.clientW = deadline{set: c.SetWriteDeadline, d: s.WriteTimeout}
	toOrigin := int64(len(b))
	s.Metrics.RelayBytes(proto, gwmetrics.ToOrigin, toOrigin)
	down := make(chan int64, 1)
	go func() {
		down <- rl.downstream(&framer{br: bufio.NewReaderSize(oc, relayBackBufSize), max: maxOriginMessage})
	}()
	toOrigin += rl.upstream(&framer{br: bufio.NewReaderSize(in, relayBufSize), max: s.MaxRequestBytes})
	cl.toClient = <-down
	cl.toOrigin = toOrigin
	cl.outcome, cl.err, cl.udpRefused = rl.outcome, rl.err, rl.udpRefused
	s.Metrics.RelayEnd(proto, gwmetrics.RolePublish, rl.outcome)
	return true
}

// dial connects to the origin of u, with TLS for rtsps.
func (s *Server) dial(u *base.URL) (net.Conn, error) {
	host := u.Host
	if u.Port() == "" {
		port := "554"
		if u.Scheme == "rtsps" {
			port = "322"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.DialTimeout)
	defer cancel()
	nd := &net.Dialer{}
	if u.Scheme == "rtsps" {
		return (&tls.Dialer{NetDialer: nd, Config: s.OriginTLSConfig}).DialContext(ctx, "tcp", host)
	}
	return nd.DialContext(ctx, "tcp", host)
}

// relay is one publisher's session passed through to its origin.
type relay struct {
	s              *Server
	client, origin net.Conn
	path           string    // the placed stream's escaped path: requests stay under it
	gwBase         string    // scheme://host the client used
	orBase         string    // scheme://host of the origin
	orURL          *base.URL // the origin's URL of the stream

	cmu     sync.Mutex // serializes writes to the client: the origin's stream and the gateway's own answers
	clientW deadline   // guarded by cmu

	udpRefused int // SETUPs answered 461; upstream's only

	once    sync.Once
	outcome string
	err     error
}

// end records the first reason the relay stops and closes both sides, which ends the other
// direction's pump.
func (r *relay) end(outcome string, err error) {
	r.once.Do(func() {
		r.outcome, r.err = outcome, err
		r.client.Close()
		r.origin.Close()
	})
}

// upstream passes the client's requests and frames to the origin until either side fails;
// it returns the bytes sent.
func (r *relay) upstream(f *framer) int64 {
	rd := deadline{set: r.client.SetReadDeadline, d: r.s.ReadTimeout}
	wd := deadline{set: r.origin.SetWriteDeadline, d: r.s.WriteTimeout}
	m := meter{m: r.s.Metrics, dir: gwmetrics.ToOrigin}
	defer m.flush()
	for {
		now := time.Now()
		rd.refresh(now)
		m.tick(now)
		kind, b, err := f.next()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
				r.end(OutcomeOK, nil)
			case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, net.ErrClosed), isNetErr(err):
				r.end(OutcomeClientGone, err)
			default:
				r.reply(&base.Response{StatusCode: base.StatusBadRequest, Header: base.Header{"Connection": base.HeaderValue{"close"}}})
				r.end(OutcomeBadRequest, err)
			}
			return m.total
		}
		if kind == unitMessage {
			if b = r.request(b); b == nil {
				continue
			}
		}
		wd.refresh(now)
		n, err := r.origin.Write(b)
		m.add(n)
		if err != nil {
			r.end(OutcomeOriginFailed, err)
			return m.total
		}
	}
}

// request rewrites one client request for the origin; nil when the gateway answered it.
func (r *relay) request(b []byte) []byte {
	if bytes.HasPrefix(b, []byte("RTSP/")) {
		return b // a client's answer to a request of the origin's
	}
	var req base.Request
	if err := parseWhole(b, &req); err != nil {
		r.reply(&base.Response{StatusCode: base.StatusBadRequest, Header: base.Header{"Connection": base.HeaderValue{"close"}}})
		r.end(OutcomeBadRequest, err)
		return nil
	}
	res := &base.Response{Header: base.Header{"CSeq": req.Header["CSeq"]}}
	if s := req.Header["Session"]; s != nil {
		res.Header["Session"] = s
	}
	switch {
	case req.URL != nil && !r.underPath(req.URL):
		// The placement was for one NAME: the session may not wander to another.
		res.StatusCode = base.StatusBadRequest
	case req.Method == base.Setup && !tcpTransport(req.Header["Transport"]):
		// The relay carries TCP only; clients retry with interleaved TCP on 461.
		res.StatusCode = base.StatusUnsupportedTransport
		r.udpRefused++
	default:
		if req.URL != nil {
			u := req.URL.Clone()
			u.Scheme, u.Host, u.User = r.orURL.Scheme, r.orURL.Host, nil
			req.URL = u
		}
		out, err := req.Marshal()
		if err != nil {
			r.end(OutcomeBadRequest, err)
			return nil
		}
		return out
	}
	r.reply(res)
	return nil
}

// underPath reports whether u names the placed stream or a control path under it.
func (r *relay) underPath(u *base.URL) bool {
	p := u.RawPath
	if p == "" {
		p = u.Path
	}
	return p == r.path || strings.HasPrefix(p, strings.TrimSuffix(r.path, "/")+"/")
}

// reply writes the gateway's own answer to the client.
func (r *relay) reply(res *base.Response) {
	b, err := res.Marshal()
	if err != nil {
		return
	}
	r.cmu.Lock()
	defer r.cmu.Unlock()
	r.clientW.refresh(time.Now())
	_, _ = r.client.Write(b)
}

// downstream passes the origin's responses and frames to the client until either side
// fails; it returns the bytes sent. The origin has no read deadline: the publisher's
// silence is what cuts a session, and an origin may say nothing while it records.
func (r *relay) downstream(f *framer) int64 {
	m := meter{m: r.s.Metrics, dir: gwmetrics.ToClient}
	defer m.flush()
	for {
		kind, b, err := f.next()
		if err != nil {
			r.end(OutcomeOriginFailed, err)
			return m.total
		}
		if kind == unitMessage {
			if b, err = r.response(b); err != nil {
				r.end(OutcomeOriginFailed, err)
				return m.total
			}
		}
		now := time.Now()
		m.tick(now)
		r.cmu.Lock()
		r.clientW.refresh(now)
		n, err := r.client.Write(b)
		r.cmu.Unlock()
		m.add(n)
		if err != nil {
			r.end(OutcomeClientGone, err)
			return m.total
		}
	}
}

// rewritten are the response headers that may carry the origin's URL back to the client.
var rewritten = []string{"Content-Base", "Content-Location", "Location", "RTP-Info"}

// response moves URLs of the origin in a response back to the gateway's; requests of the
// origin (rare) pass as they are.
func (r *relay) response(b []byte) ([]byte, error) {
	if !bytes.HasPrefix(b, []byte("RTSP/")) || !bytes.Contains(b, []byte(r.orBase)) {
		return b, nil
	}
	var res base.Response
	if err := parseWhole(b, &res); err != nil {
		return nil, err
	}
	for _, k := range rewritten {
		for i, v := range res.Header[k] {
			res.Header[k][i] = swapPrefix(v, r.orBase, r.gwBase)
		}
	}
	return res.Marshal()
}

// deadline sets a connection's read or write deadline to d (plus up to an eighth) from the
// last activity, refreshing it at most every d/8 so a busy relay does not pay for it on
// every frame. A side idle for d is cut after between d and 9d/8.
type deadline struct {
	set  func(time.Time) error
	d    time.Duration
	next time.Time
}

func (dl *deadline) refresh(now time.Time) {
	if now.Before(dl.next) {
		return
	}
	_ = dl.set(now.Add(dl.d + dl.d/8))
	dl.next = now.Add(dl.d / 8)
}

// meter counts one direction's bytes into Metrics about once a second and at the end.
type meter struct {
	m        Metrics
	dir      string
	total    int64
	reported int64
	next     time.Time
}

func (m *meter) add(n int) { m.total += int64(n) }

func (m *meter) tick(now time.Time) {
	if now.Before(m.next) {
		return
	}
	m.flush()
	m.next = now.Add(time.Second)
}

func (m *meter) flush() {
	m.m.RelayBytes(proto, m.dir, m.total-m.reported)
	m.reported = m.total
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}
