// Package rtspgw answers RTSP clients on the gateway: players get a DESCRIBE 302 to the origin that carries the stream, publishers are relayed to the origin chosen for them.
package rtspgw

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
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
	DefaultDialTimeout     = 5 * time.Second
	DefaultMaxConns        = 10000
	DefaultMaxConnsPerIP   = netcap.DefaultMaxPerIP
	DefaultFirstRequest    = 5 * time.Second
	DefaultMaxRequestBytes = 16 << 10
	DefaultRetryAfter      = 2 * time.Second
)

// Outcomes, as logged and counted (proto "rtsp").
const (
	OutcomeOK           = gwmetrics.OK               // DESCRIBE answered 302, or a relay that the publisher ended
	OutcomeNotFound     = gwmetrics.NotFound         // 404: no origin lists the name (or none at all, on ANNOUNCE)
	OutcomeUnavailable  = gwmetrics.Unavailable      // 503: nobody eligible
	OutcomeBadPath      = gwmetrics.BadPath          // 404: not a stream URL (or hostile)
	OutcomeBadQuery     = gwmetrics.BadQuery         // 400: query with bytes a Location must not carry
	OutcomeBadOrigin    = gwmetrics.BadOrigin        // 502: the chosen origin's base URL was refused
	OutcomeBadRequest   = gwmetrics.BadRequest       // 400 and close: not RTSP, no CSeq, too large
	OutcomeNotAllowed   = gwmetrics.MethodNotAllowed // 405 (455 for a session method before ANNOUNCE)
	OutcomeError        = gwmetrics.Error            // 500: the resolver gave no outcome
	OutcomeOriginFailed = gwmetrics.OriginFailed     // relay: origin unreachable (502), closed or stalled
	OutcomeClientGone   = gwmetrics.ClientGone       // relay: the publisher stalled or its connection failed
	OutcomeUnauthorized = gwmetrics.Unauthorized     // 403 and close: ANNOUNCE without a valid publish key
	proto               = "rtsp"
	// public is what OPTIONS lists: every method a real server offers. GStreamer's rtspsrc
	// and rtspclientsink give up before DESCRIBE when SETUP is missing.
	public = "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, PAUSE, GET_PARAMETER, TEARDOWN"
	// maxOriginMessage caps one RTSP message from an origin (a response with its body).
	maxOriginMessage = 64 << 10
	// preRelayBuf is the read buffer of a connection until it turns into a relay.
	preRelayBuf = 4 << 10
)

// Resolver is what the listener asks: who should serve NAME to this viewer (Resolve), and
// which origin takes this publisher (Place)? *resolve.Table implements it.
type Resolver interface {
	Resolve(req resolve.Request) resolve.Result
	Place(req resolve.Request) resolve.Result
}

var _ Resolver = (*resolve.Table)(nil)

// Metrics counts outcomes and relayed traffic; gwmetrics.Prom implements it.
type Metrics interface {
	Redirect(proto, outcome string)
	ResolveDuration(proto string, d time.Duration)
	RelayStart(proto, role string)
	RelayEnd(proto, role, outcome string)
	RelayBytes(proto, direction string, n int64)
}

var _ Metrics = (*gwmetrics.Prom)(nil)

// Server is the gateway's RTSP listener.
//
// Players: OPTIONS is answered 200 with the full Public list (never redirected: gortsplib
// clients break on that), DESCRIBE gets "302 Found" with an absolute rtsp:// Location (never
// a Location on a 200: live555 would adopt it as its base URL), GET_PARAMETER 200, other
// session methods 455 and unknown ones 405.
//
// Publishers: no publisher follows a redirect on ANNOUNCE, so the listener relays. It places
// NAME with Resolver.Place, dials the origin (TLS when the origin offers only rtsps), sends
// it the ANNOUNCE with the request URI on the origin's base URL, then passes every request,
// response and interleaved frame both ways until either side closes. A SETUP that asks for
// UDP is answered 461 Unsupported Transport by the gateway (the relay is TCP only; FFmpeg and
// gortsplib then retry with TCP interleaved); request URIs are moved to the origin's base
// URL and Content-Base, Content-Location, Location and RTP-Info in responses back to the
// URL the client used.
type Server struct {
	// Address to listen on, e.g. ":8554".
	Address string
	// Resolver chooses the origin. Required.
	Resolver Resolver
	// FirstRequestTimeout bounds the time from accept to the end of the first request: a
	// client that connects and sends nothing (or dribbles) is closed after it. It defaults to
	// 5s (ReadTimeout if shorter).
	FirstRequestTimeout time.Duration
	// ReadTimeout bounds reading each later request, the wait for the next one, and a relayed
	// publisher's silence (in a relay deadlines are refreshed every eighth of the timeout,
	// so a silent side is cut after between 1 and 1.125 times it). It defaults to 10s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing to a client, and in a relay to either side: a side that
	// stops reading is cut after it. It defaults to 10s.
	WriteTimeout time.Duration
	// DialTimeout bounds connecting to an origin (and its TLS handshake). It defaults to 5s.
	DialTimeout time.Duration
	// OriginTLSConfig is used to dial origins that offer only rtsps. It defaults to nil: the
	// system roots, and the origin's host as server name.
	OriginTLSConfig *tls.Config
	// MaxConns bounds concurrent client connections; more are closed at once. It defaults to
	// 10000.
	MaxConns int
	// MaxConnsPerIP bounds concurrent connections from one client address, so that one host
	// cannot take every slot; more are closed at once. It defaults to 256.
	MaxConnsPerIP int
	// MaxRequestBytes bounds one request (line, headers and body). It defaults to 16 KiB.
	// Responses from origins are capped at 64 KiB, interleaved frames at 64 KiB by format.
	MaxRequestBytes int
	// RetryAfter is sent with 503. It defaults to 2s.
	RetryAfter time.Duration
	// Authorize, if set, decides whether a publisher may publish NAME: it gets the NAME and
	// the ANNOUNCE URL's query, and a non-nil error refuses with 403 (and closes) before any
	// origin is chosen. Nil lets anyone publish (the default). DESCRIBE is not checked.
	Authorize func(name, query, client string) error
	// AuthorizePlay, if set, decides whether a player may play NAME: it gets the NAME, the
	// DESCRIBE URL's query (which the redirect carries on to the origin) and the client's
	// address, and a non-nil error answers 403 (and closes) before any origin is chosen. Nil
	// lets anyone play (the default).
	AuthorizePlay func(name, query, client string) error
	// Logger gets one line per connection. It defaults to slog.Default().
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics Metrics

	ln      *netcap.Listener
	ctx     context.Context
	cancel  context.CancelFunc
	conns   netcap.Group
	rejects netcap.RejectLog
}

// Initialize listens and starts serving.
func (s *Server) Initialize() error {
	if s.Resolver == nil {
		return errors.New("rtspgw: no resolver")
	}
	s.setDefaults()
	ln, err := net.Listen("tcp", s.Address)
	if err != nil {
		return fmt.Errorf("rtspgw: %w", err)
	}
	s.rejects = netcap.RejectLog{Logger: s.Logger, Msg: "rtsp connections refused", Count: func(reason string) { s.Metrics.Redirect(proto, gwmetrics.RefusalOutcome(reason)) }}
	s.ln = &netcap.Listener{Listener: ln, Max: int64(s.MaxConns), MaxPerIP: int64(s.MaxConnsPerIP),
		EvictSilentAfter: netcap.DefaultEvictSilentAfter, OnReject: s.rejects.Reject}
	s.conns.Serve(s.ln, s.serve)
	return nil
}

func (s *Server) setDefaults() {
	s.FirstRequestTimeout = orDefault(s.FirstRequestTimeout, DefaultFirstRequest)
	s.ReadTimeout = orDefault(s.ReadTimeout, DefaultReadTimeout)
	s.WriteTimeout = orDefault(s.WriteTimeout, DefaultWriteTimeout)
	s.DialTimeout = orDefault(s.DialTimeout, DefaultDialTimeout)
	s.RetryAfter = orDefault(s.RetryAfter, DefaultRetryAfter)
	if s.MaxConns <= 0 {
		s.MaxConns = DefaultMaxConns
	}
	if s.MaxConnsPerIP <= 0 {
		s.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if s.MaxRequestBytes <= 0 {
		s.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.Metrics == nil {
		s.Metrics = gwmetrics.Nop{}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops listening, closes every connection (relayed origins' too) and returns when all
// are done.
func (s *Server) Close() {
	if s.ln == nil {
		return
	}
	s.cancel() // dials to origins in progress
	s.conns.Close()
}

// track registers a connection (a dial to an origin) for Close; false once the server is closing.
func (s *Server) track(c net.Conn) bool { return s.conns.Track(c) }

func (s *Server) untrack(c net.Conn) { s.conns.Untrack(c) }

// connLog is what the connection's one log line says.
type connLog struct {
	requests int
	name     string
	origin   string
	route    string // resolve.Result.RouteLog: which copy the origin is (owner, relay, ...)
	mode     string // gwmetrics.ModeRedirect or ModeRelay
	outcome  string
	toOrigin int64
	toClient int64
	// udpRefused counts SETUPs that asked for UDP and got 461 (the client then retries TCP).
	udpRefused int
	err        error
}

func (s *Server) serve(c net.Conn) {
	start := time.Now()
	client := netcap.RemoteIP(c)
	f := &framer{br: bufio.NewReaderSize(c, preRelayBuf), max: s.MaxRequestBytes}
	cl := connLog{mode: gwmetrics.ModeRedirect}
	defer func() {
		level := slog.LevelInfo
		if cl.outcome == "" || cl.outcome == OutcomeBadRequest || cl.outcome == OutcomeBadPath || cl.outcome == OutcomeNotAllowed {
			level = slog.LevelDebug
		}
		s.Logger.Log(context.Background(), level, "rtsp connection",
			"client", client, "requests", cl.requests, "name", cl.name, "origin", cl.origin, "route", cl.route, "mode", cl.mode,
			"outcome", cl.outcome, "err", errString(cl.err), "bytes_to_origin", cl.toOrigin, "bytes_to_client", cl.toClient, "udp_setups_refused", cl.udpRefused,
			"duration", time.Since(start).Round(time.Millisecond).String())
	}()
	badRequest := func(err error) {
		cl.outcome, cl.err = OutcomeBadRequest, err
		s.Metrics.Redirect(proto, OutcomeBadRequest)
		s.write(c, &base.Response{StatusCode: base.StatusBadRequest, Header: base.Header{"Connection": base.HeaderValue{"close"}}})
	}
	_ = c.SetReadDeadline(start.Add(min(s.FirstRequestTimeout, s.ReadTimeout)))
	for {
		if cl.requests > 0 {
			_ = c.SetReadDeadline(time.Now().Add(s.ReadTimeout))
		}
		kind, raw, err := f.next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
				if cl.requests == 0 || errors.Is(err, os.ErrDeadlineExceeded) {
					cl.err = err
				}
				return
			}
			badRequest(err)
			return
		}
		if kind != unitMessage {
			badRequest(errors.New("interleaved frame outside a relay"))
			return
		}
		var req base.Request
		if err := parseWhole(raw, &req); err != nil {
			badRequest(err)
			return
		}
		cl.requests++
		cseq, ok := req.Header["CSeq"]
		if !ok || len(cseq) != 1 {
			badRequest(errors.New("no CSeq"))
			return
		}
		res := &base.Response{StatusCode: base.StatusOK, Header: base.Header{"CSeq": cseq}}
		switch req.Method {
		case base.Options:
			res.Header["Public"] = base.HeaderValue{public}
		case base.Describe:
			s.describe(&req, client, res, &cl)
		case base.Announce:
			if s.announce(c, f, &req, client, res, &cl) {
				return // relayed to its end
			}
		case base.GetParameter:
			// A keep-alive: nothing to report.
		case base.Setup, base.Play, base.Record, base.Pause, base.Teardown:
			// Players follow DESCRIBE's 302 to the origin; publishers start with ANNOUNCE.
			res.StatusCode = base.StatusMethodNotValidInThisState
			cl.outcome = OutcomeNotAllowed
			s.Metrics.Redirect(proto, OutcomeNotAllowed)
		default:
			res.StatusCode = base.StatusMethodNotAllowed
			res.Header["Public"] = base.HeaderValue{public}
			cl.outcome = OutcomeNotAllowed
			s.Metrics.Redirect(proto, OutcomeNotAllowed)
		}
		if !s.write(c, res) || res.Header["Connection"] != nil {
			return
		}
	}
}

// streamPath returns the escaped path, NAME and raw query of a DESCRIBE or ANNOUNCE URL, or
// the outcome that refuses it.
func streamPath(u *base.URL) (path, name, query string, code base.StatusCode, outcome string) {
	if u == nil {
		return "", "", "", base.StatusNotFound, OutcomeBadPath
	}
	path = u.RawPath
	if path == "" {
		path = u.Path
	}
	name, ok := streamname.FromRTSPPath(path)
	if !ok {
		return "", "", "", base.StatusNotFound, OutcomeBadPath
	}
	if !streamname.ValidQuery(u.RawQuery) {
		return path, name, "", base.StatusBadRequest, OutcomeBadQuery
	}
	return path, name, u.RawQuery, 0, ""
}

// describe fills res with the redirect (or the error) for a DESCRIBE.
func (s *Server) describe(req *base.Request, client string, res *base.Response, cl *connLog) {
	outcome := func(code base.StatusCode, o string) {
		res.StatusCode, cl.outcome = code, o
		s.Metrics.Redirect(proto, o)
	}
	path, name, query, code, o := streamPath(req.URL)
	cl.name = name
	if code != 0 {
		outcome(code, o)
		return
	}
	if s.AuthorizePlay != nil {
		if err := s.AuthorizePlay(name, query, client); err != nil {
			res.Header["Connection"] = base.HeaderValue{"close"}
			cl.err = fmt.Errorf("unauthorized: %w", err)
			outcome(base.StatusForbidden, OutcomeUnauthorized)
			return
		}
	}
	t0 := time.Now()
	r := s.Resolver.Resolve(resolve.Request{Name: name, Proto: resolve.ProtoRTSP, Client: client, Arrival: true})
	s.Metrics.ResolveDuration(proto, time.Since(t0))
	switch r.Outcome {
	case resolve.OK:
		loc, ok := streamname.Location(r.BaseURL, path, query)
		if !ok {
			outcome(base.StatusBadGateway, OutcomeBadOrigin)
			return
		}
		res.Header["Location"] = base.HeaderValue{loc}
		cl.origin, cl.route = r.OriginID, r.RouteLog()
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
