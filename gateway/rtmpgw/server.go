// Package rtmpgw is the gateway's RTMP listener: it redirects the players and publishers that can follow a redirect and relays the rest to the chosen origin.
package rtmpgw

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"github.com/peergate/peergate/gateway/gwmetrics"
	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/internal/netcap"
)

// Defaults of the Server settings.
const (
	DefaultMode             = ModeAuto
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultReadTimeout      = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultFirstRequest     = 5 * time.Second
	DefaultMaxConns         = 10000
	DefaultMaxConnsPerIP    = netcap.DefaultMaxPerIP
	DefaultMaxSetupBytes    = 64 << 10
)

// Modes: what the gateway does with a player or publisher once it knows the NAME.
const (
	ModeAuto     = "auto"     // redirect the clients known to follow, relay the others
	ModeRedirect = "redirect" // redirect everyone
	ModeRelay    = "relay"    // relay everyone
)

// Outcomes, as logged and counted (proto "rtmp").
const (
	OutcomeOK           = gwmetrics.OK           // redirected, or relayed until a side closed normally
	OutcomeNotFound     = gwmetrics.NotFound     // Play.StreamNotFound: no origin lists the name
	OutcomeUnavailable  = gwmetrics.Unavailable  // Play.Failed / Publish.Failed: nobody eligible
	OutcomeBadPath      = gwmetrics.BadPath      // Play.StreamNotFound / Publish.BadName: not a valid NAME
	OutcomeUnauthorized = gwmetrics.Unauthorized // Publish.Unauthorized: no valid publish key
	OutcomeBadOrigin    = gwmetrics.BadOrigin    // the chosen origin's base URL was refused
	OutcomeBadRequest   = gwmetrics.BadRequest   // not RTMP, malformed, too large, timed out before play/publish
	OutcomeError        = gwmetrics.Error        // the resolver gave no outcome
	OutcomeOriginFailed = gwmetrics.OriginFailed // relay: the origin refused, failed or went away
	OutcomeClientGone   = gwmetrics.ClientGone   // relay: the client stalled past a deadline
	OutcomeRefused      = gwmetrics.Refused      // over MaxConns
	OutcomeRefusedPerIP = gwmetrics.RefusedPerIP // over MaxConnsPerIP
	proto               = "rtmp"
)

// Resolver is what the listener asks: who should serve NAME to this player (Resolve), and
// which origin takes this publisher (Place)?
type Resolver interface {
	Resolve(req resolve.Request) resolve.Result
	Place(req resolve.Request) resolve.Result
}

// Metrics counts outcomes and relayed sessions; gwmetrics.Prom implements it.
type Metrics interface {
	Redirect(proto, outcome string)
	ResolveDuration(proto string, d time.Duration)
	RelayStart(proto, role string)
	RelayEnd(proto, role, outcome string)
	RelayBytes(proto, direction string, n int64)
}

// Server is the gateway's RTMP listener. It does the handshake, connect and createStream
// itself; at play or publish it derives NAME (shared/streamname.FromRTMP: app "/" stream
// key, the app "static" for single-segment names) and, by Mode, either redirects (SRS-style
// onStatus with ex.code 302, plus Enhanced RTMP v2 ReconnectRequest for clients that set the
// reconnect bit of capsEx) or relays: it connects to the origin as an RTMP client, replays
// connect, createStream and the play or publish there, and passes messages both ways.
type Server struct {
	// Address to listen on, e.g. ":1935".
	Address string
	// Resolver chooses the origin. Required.
	Resolver Resolver
	// Mode is "auto", "redirect" or "relay". It defaults to "auto": redirect the clients that
	// set the reconnect bit of capsEx or whose flashVer matches FollowFlashVer, relay the rest.
	Mode string
	// FollowFlashVer lists flashVer patterns of clients known to follow the SRS-style redirect
	// in auto mode. A pattern matches the whole flashVer; '*' stands for any run of characters
	// and is the only special byte ("SRS/*" matches "SRS/4.0.1"). It defaults to none.
	FollowFlashVer []string
	// FirstRequestTimeout bounds the RTMP handshake (accept to C2): a client that connects
	// and sends nothing is closed after it. It defaults to 5s (HandshakeTimeout if shorter).
	FirstRequestTimeout time.Duration
	// HandshakeTimeout bounds everything from accept to play/publish, and the relay's setup
	// with the origin. It defaults to 10s.
	HandshakeTimeout time.Duration
	// ReadTimeout bounds the wait for the next message from the side that sends media while
	// relaying (the origin for players, the client for publishers). It defaults to 10s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing each message to either side; a client that stops reading
	// is cut when it expires. It defaults to 10s.
	WriteTimeout time.Duration
	// MaxConns bounds concurrent client connections; more are closed at once. It defaults to 10000.
	MaxConns int
	// MaxConnsPerIP bounds concurrent connections from one client address, so that one host
	// cannot take every slot; more are closed at once. It defaults to 256.
	MaxConnsPerIP int
	// MaxSetupBytes bounds what a client may send before play/publish (handshake included).
	// It defaults to 64 KiB. Every message is also capped at gortmplib's 10 MiB.
	MaxSetupBytes int
	// OriginTLSConfig is used to reach rtmps origins; nil means the system roots and the
	// origin's host name.
	OriginTLSConfig *tls.Config
	// Authorize, if set, decides whether a publisher may publish NAME: it gets the NAME and
	// the query sent on the app or stream key (see streamname.FromRTMP), and a non-nil error
	// refuses with NetStream.Publish.Unauthorized before any origin is chosen. Nil lets anyone
	// publish (the default). Players are not checked.
	Authorize func(name, query, client string) error
	// AuthorizePlay, if set, decides whether a player may play NAME: it gets the NAME, the
	// query sent on the app or stream key (carried on to the origin by the redirect or the
	// relay) and the client's address, and a non-nil error refuses with
	// NetStream.Play.Failed before any origin is chosen. Nil lets anyone play (the default).
	AuthorizePlay func(name, query, client string) error
	// Logger gets one line per connection. It defaults to slog.Default().
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics Metrics

	ln    *netcap.Listener
	conns netcap.Group

	rejects netcap.RejectLog
}

// Initialize listens and starts serving.
func (s *Server) Initialize() error {
	if s.Resolver == nil {
		return errors.New("rtmpgw: no resolver")
	}
	switch s.Mode {
	case "":
		s.Mode = DefaultMode
	case ModeAuto, ModeRedirect, ModeRelay:
	default:
		return fmt.Errorf("rtmpgw: mode %q: must be auto, redirect or relay", s.Mode)
	}
	s.FirstRequestTimeout = orDefault(s.FirstRequestTimeout, DefaultFirstRequest)
	s.HandshakeTimeout = orDefault(s.HandshakeTimeout, DefaultHandshakeTimeout)
	s.ReadTimeout = orDefault(s.ReadTimeout, DefaultReadTimeout)
	s.WriteTimeout = orDefault(s.WriteTimeout, DefaultWriteTimeout)
	if s.MaxConns <= 0 {
		s.MaxConns = DefaultMaxConns
	}
	if s.MaxConnsPerIP <= 0 {
		s.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if s.MaxSetupBytes <= 0 {
		s.MaxSetupBytes = DefaultMaxSetupBytes
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.Metrics == nil {
		s.Metrics = gwmetrics.Nop{}
	}
	ln, err := net.Listen("tcp", s.Address)
	if err != nil {
		return fmt.Errorf("rtmpgw: %w", err)
	}
	s.rejects = netcap.RejectLog{Logger: s.Logger, Msg: "rtmp connections refused", Count: func(reason string) { s.Metrics.Redirect(proto, gwmetrics.RefusalOutcome(reason)) }}
	s.ln = &netcap.Listener{Listener: ln, Max: int64(s.MaxConns), MaxPerIP: int64(s.MaxConnsPerIP),
		EvictSilentAfter: netcap.DefaultEvictSilentAfter, OnReject: s.rejects.Reject}
	s.conns.Serve(s.ln, s.serve)
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops listening, closes every client and origin connection and returns when all
// goroutines are done.
func (s *Server) Close() {
	if s.ln == nil {
		return
	}
	s.conns.Close()
}

// track registers c (a dial to an origin) so Close closes it; false when the server is closing.
func (s *Server) track(c net.Conn) bool { return s.conns.Track(c) }

func (s *Server) untrack(c net.Conn) { s.conns.Untrack(c) }

// connLog is what the connection's one log line says.
type connLog struct {
	client   string
	flashVer string
	capsEx   uint32
	role     string
	name     string
	mode     string
	origin   string
	route    string // resolve.Result.RouteLog: which copy the origin is (owner, relay, ...)
	outcome  string
	toOrigin int64
	toClient int64
	err      error
}

func (s *Server) serve(c net.Conn) {
	start := time.Now()
	cl := &connLog{client: netcap.RemoteIP(c)}
	defer func() {
		if p := recover(); p != nil {
			cl.outcome = OutcomeError
			cl.err = fmt.Errorf("panic: %v", p)
			s.Logger.Error("rtmp connection panic", "client", cl.client, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
		level := slog.LevelInfo
		if cl.outcome == "" || cl.outcome == OutcomeBadRequest {
			level = slog.LevelDebug
		}
		s.Logger.Log(context.Background(), level, "rtmp connection",
			"client", cl.client, "flashver", cl.flashVer, "capsex", cl.capsEx, "role", cl.role, "name", cl.name,
			"mode", cl.mode, "origin", cl.origin, "route", cl.route, "outcome", cl.outcome,
			"bytes_to_origin", cl.toOrigin, "bytes_to_client", cl.toClient,
			"err", errString(cl.err), "duration", time.Since(start).Round(time.Millisecond).String())
	}()
	s.session(c, cl)
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
