// Package rtspgw answers RTSP players on the gateway: OPTIONS 200, DESCRIBE 302 to the origin that carries the stream.
package rtspgw

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/peergate/peergate/gateway/gwmetrics"
	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/internal/netcap"
	"github.com/peergate/peergate/shared/streamname"
)

// Defaults of the Server settings.
const (
	DefaultReadTimeout     = 10 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
	DefaultMaxConns        = 10000
	DefaultMaxRequestBytes = 16 << 10
	DefaultRetryAfter      = 2 * time.Second
)

// Outcomes, as logged and counted (proto "rtsp").
const (
	OutcomeOK          = gwmetrics.OK               // DESCRIBE answered 302
	OutcomeNotFound    = gwmetrics.NotFound         // 404: no origin lists the name
	OutcomeUnavailable = gwmetrics.Unavailable      // 503: listed, nobody eligible
	OutcomeBadPath     = gwmetrics.BadPath          // 404: not a stream URL (or hostile)
	OutcomeBadQuery    = gwmetrics.BadQuery         // 400: query with bytes a Location must not carry
	OutcomeBadOrigin   = gwmetrics.BadOrigin        // 502: the chosen origin's base URL was refused
	OutcomeBadRequest  = gwmetrics.BadRequest       // 400 and close: not RTSP, no CSeq, too large
	OutcomeNotAllowed  = gwmetrics.MethodNotAllowed // 405: a method the gateway does not take
	OutcomeError       = gwmetrics.Error            // 500: the resolver gave no outcome
	proto              = "rtsp"
	public             = "OPTIONS, DESCRIBE"
	errTooLargeMessage = "request too large"
)

// Resolver is what the listener asks: who should serve NAME to this viewer?
type Resolver interface {
	Resolve(req resolve.Request) resolve.Result
}

// Metrics counts outcomes; gwmetrics.Prom implements it.
type Metrics interface {
	Redirect(proto, outcome string)
	ResolveDuration(proto string, d time.Duration)
}

// Server is the gateway's RTSP listener. It speaks just enough RTSP to redirect: OPTIONS is
// answered 200 (never redirected: gortsplib clients break on that), DESCRIBE gets
// "302 Found" with an absolute rtsp:// Location (never a Location on a 200: live555 would
// adopt it as its base URL), any other method 405. Publishers are not redirected (no
// publisher follows a redirect on ANNOUNCE).
type Server struct {
	// Address to listen on, e.g. ":8554".
	Address string
	// Resolver chooses the origin. Required.
	Resolver Resolver
	// ReadTimeout bounds reading each request, and the wait for the next one. It defaults to 10s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response. It defaults to 10s.
	WriteTimeout time.Duration
	// MaxConns bounds concurrent connections; more are closed at once. It defaults to 10000.
	MaxConns int
	// MaxRequestBytes bounds one request (line, headers and body). It defaults to 16 KiB.
	MaxRequestBytes int
	// RetryAfter is sent with 503. It defaults to 2s.
	RetryAfter time.Duration
	// Logger gets one line per connection. It defaults to slog.Default().
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics Metrics

	ln    *netcap.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	done  bool
}

// Initialize listens and starts serving.
func (s *Server) Initialize() error {
	if s.Resolver == nil {
		return errors.New("rtspgw: no resolver")
	}
	s.ReadTimeout = orDefault(s.ReadTimeout, DefaultReadTimeout)
	s.WriteTimeout = orDefault(s.WriteTimeout, DefaultWriteTimeout)
	s.RetryAfter = orDefault(s.RetryAfter, DefaultRetryAfter)
	if s.MaxConns <= 0 {
		s.MaxConns = DefaultMaxConns
	}
	if s.MaxRequestBytes <= 0 {
		s.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.Metrics == nil {
		s.Metrics = nopMetrics{}
	}
	ln, err := net.Listen("tcp", s.Address)
	if err != nil {
		return fmt.Errorf("rtspgw: %w", err)
	}
	s.ln = &netcap.Listener{Listener: ln, Max: int64(s.MaxConns), OnReject: func(c net.Conn) {
		s.Logger.Warn("rtsp connection refused", "remote", c.RemoteAddr().String(), "reason", "max_conns")
	}}
	s.conns = map[net.Conn]struct{}{}
	s.wg.Add(1)
	go s.accept()
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops listening, closes every connection and returns when all are done.
func (s *Server) Close() {
	if s.ln == nil {
		return
	}
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return
	}
	s.done = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// limitReader fails once a request has read more than its budget; reset starts a new one.
type limitReader struct {
	r    io.Reader
	left int
	max  int
}

var errTooLarge = errors.New(errTooLargeMessage)

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errTooLarge
	}
	if len(p) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= n
	return n, err
}

func (l *limitReader) reset() { l.left = l.max }

// connLog is what the connection's one log line says.
type connLog struct {
	requests int
	name     string
	origin   string
	outcome  string
	err      error
}

func (s *Server) serve(c net.Conn) {
	start := time.Now()
	client := remoteIP(c)
	lr := &limitReader{r: c, max: s.MaxRequestBytes}
	// A small buffer: the limit must count what the parser consumes, not what it read ahead.
	br := bufio.NewReaderSize(lr, 512)
	var cl connLog
	defer func() {
		level := slog.LevelInfo
		if cl.outcome == "" || cl.outcome == OutcomeBadRequest || cl.outcome == OutcomeBadPath || cl.outcome == OutcomeNotAllowed {
			level = slog.LevelDebug
		}
		s.Logger.Log(context.Background(), level, "rtsp connection",
			"client", client, "requests", cl.requests, "name", cl.name, "origin", cl.origin,
			"outcome", cl.outcome, "err", errString(cl.err), "duration", time.Since(start).Round(time.Millisecond).String())
	}()
	for {
		lr.reset()
		_ = c.SetReadDeadline(time.Now().Add(s.ReadTimeout))
		var req base.Request
		if err := req.Unmarshal(br); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
				if cl.requests == 0 {
					cl.err = err
				}
				return
			}
			cl.outcome, cl.err = OutcomeBadRequest, err
			s.Metrics.Redirect(proto, OutcomeBadRequest)
			s.write(c, &base.Response{StatusCode: base.StatusBadRequest, Header: base.Header{"Connection": base.HeaderValue{"close"}}})
			return
		}
		cl.requests++
		cseq, ok := req.Header["CSeq"]
		if !ok || len(cseq) != 1 {
			cl.outcome, cl.err = OutcomeBadRequest, errors.New("no CSeq")
			s.Metrics.Redirect(proto, OutcomeBadRequest)
			s.write(c, &base.Response{StatusCode: base.StatusBadRequest, Header: base.Header{"Connection": base.HeaderValue{"close"}}})
			return
		}
		res := &base.Response{StatusCode: base.StatusOK, Header: base.Header{"CSeq": cseq}}
		switch req.Method {
		case base.Options:
			res.Header["Public"] = base.HeaderValue{public}
		case base.Describe:
			s.describe(&req, client, res, &cl)
		default:
			res.StatusCode = base.StatusMethodNotAllowed
			res.Header["Public"] = base.HeaderValue{public}
			cl.outcome = OutcomeNotAllowed
			s.Metrics.Redirect(proto, OutcomeNotAllowed)
		}
		if !s.write(c, res) {
			return
		}
	}
}

// describe fills res with the redirect (or the error) for a DESCRIBE.
func (s *Server) describe(req *base.Request, client string, res *base.Response, cl *connLog) {
	outcome := func(code base.StatusCode, o string) {
		res.StatusCode, cl.outcome = code, o
		s.Metrics.Redirect(proto, o)
	}
	if req.URL == nil {
		outcome(base.StatusNotFound, OutcomeBadPath)
		return
	}
	path := req.URL.RawPath
	if path == "" {
		path = req.URL.Path
	}
	name, ok := streamname.FromRTSPPath(path)
	if !ok {
		outcome(base.StatusNotFound, OutcomeBadPath)
		return
	}
	cl.name = name
	query := req.URL.RawQuery
	if !streamname.ValidQuery(query) {
		outcome(base.StatusBadRequest, OutcomeBadQuery)
		return
	}
	t0 := time.Now()
	r := s.Resolver.Resolve(resolve.Request{Name: name, Proto: resolve.ProtoRTSP, Client: client})
	s.Metrics.ResolveDuration(proto, time.Since(t0))
	switch r.Outcome {
	case resolve.OK:
		loc, ok := streamname.Location(r.BaseURL, path, query)
		if !ok {
			outcome(base.StatusBadGateway, OutcomeBadOrigin)
			return
		}
		res.Header["Location"] = base.HeaderValue{loc}
		cl.origin = r.OriginID
		outcome(base.StatusFound, OutcomeOK)
	case resolve.NotFound:
		outcome(base.StatusNotFound, OutcomeNotFound)
	case resolve.Unavailable:
		res.Header["Retry-After"] = base.HeaderValue{strconv.Itoa(int(s.RetryAfter / time.Second))}
		outcome(base.StatusServiceUnavailable, OutcomeUnavailable)
	default:
		outcome(base.StatusInternalServerError, OutcomeError)
	}
}

func (s *Server) write(c net.Conn, res *base.Response) bool {
	b, err := res.Marshal()
	if err != nil {
		return false
	}
	_ = c.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
	_, err = c.Write(b)
	return err == nil
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap().String()
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

type nopMetrics struct{}

func (nopMetrics) Redirect(string, string)               {}
func (nopMetrics) ResolveDuration(string, time.Duration) {}
