// Package httpgw is the gateway's HTTP listener: it answers every stream URL with a 302 to the chosen origin,
// or, with HLS content steering on, an HLS entry with a multivariant playlist of every copy and a steering endpoint.
package httpgw

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/peergate/peergate/gateway/gwmetrics"
	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/internal/netcap"
)

// Defaults of the Server settings.
const (
	DefaultAddress           = ":8080"
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultShutdownTimeout   = 2 * time.Second
	DefaultMaxHeaderBytes    = 16 << 10
	DefaultMaxConns          = 10000
	DefaultMaxConnsPerIP     = netcap.DefaultMaxPerIP
	DefaultRetryAfter        = 2 * time.Second
)

// Resolver chooses the origin for a request; *resolve.Table implements it.
type Resolver interface {
	Resolve(req resolve.Request) resolve.Result
}

var _ Resolver = (*resolve.Table)(nil)

// Server is the HTTP redirect listener. Set the fields, call Initialize, then Close.
// Fields must not change after Initialize.
//
// GET and HEAD of a stream URL (design.md section 2) answer 302 with Location = the chosen
// origin's registered base URL + the escaped path + the query as sent; an unknown NAME 404;
// a listed NAME with no eligible origin 503 + Retry-After; a path that is not exactly a
// stream URL 404; a query a Location must not carry 400. Never 301/308. Every answer has
// Access-Control-Allow-Origin: * and Cache-Control: no-store. With Steering set, the HLS
// entry and SteeringPath answer 200 instead (see Steering). OPTIONS on any path is a
// CORS preflight: 204 with Allow-Methods GET, HEAD, OPTIONS, Allow-Headers *, Max-Age one
// day (browsers refuse a redirected preflight). Other methods get 405 with Allow.
// The listener speaks HTTP/1.1 only (no h2 offered over TLS): one redirect per session does
// not need more. It runs its own small HTTP/1.1 server (conn.go, parse.go) rather than
// net/http, at about half the CPU per redirect (README, "Redirect performance"); a malformed
// request gets 400 (431 too large, 505 other versions) and a closed connection, and a request
// with a body is answered and the connection closed (bodies are never read).
type Server struct {
	// Address to listen on. It defaults to ":8080".
	Address string
	// Resolver chooses origins. Required.
	Resolver Resolver
	// TLSConfig, when set, makes the listener speak HTTPS; it needs Certificates or
	// GetCertificate. Requests over TLS ask the resolver for https origins.
	TLSConfig *tls.Config
	// TrustedProxies are the peers whose X-Forwarded-For and X-Forwarded-Proto headers are
	// believed. It defaults to none: the socket's address is the client and the socket's
	// TLS state is the scheme.
	TrustedProxies []netip.Prefix
	// StickyParam names a query parameter whose value, when present and not empty, is the
	// viewer key for stickiness instead of the client IP (e.g. a playback token). It is used
	// as sent, not percent-decoded, and never logged. It defaults to "" (client IP only).
	StickyParam string
	// AuthorizePlay, if set, decides whether a player may play NAME before any origin is
	// chosen: it gets the NAME, the raw query (which the Location carries on to the origin)
	// and the client address (after TrustedProxies), and a non-nil error answers 403. Nil
	// lets anyone play (the default).
	AuthorizePlay func(name, query, client string) error
	// ReadHeaderTimeout bounds reading a request's headers (and the TLS handshake), which
	// cuts off slowloris clients; for a new connection it runs from accept, so it is also the
	// first-request timeout: a client that connects and sends nothing is closed after it.
	// It defaults to 5 seconds.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request; bodies are never read, so it bounds the
	// headers when shorter than ReadHeaderTimeout. It defaults to 10 seconds.
	ReadTimeout time.Duration
	// WriteTimeout bounds answering a request, from the start of its reading (as net/http's).
	// It defaults to 10 seconds.
	WriteTimeout time.Duration
	// IdleTimeout bounds a keep-alive connection between requests. It defaults to 60 seconds.
	IdleTimeout time.Duration
	// ShutdownTimeout is how long Close lets requests in flight finish. It defaults to 2 seconds.
	ShutdownTimeout time.Duration
	// MaxHeaderBytes bounds the request line plus headers; larger requests get 431 and the
	// connection is closed (4 KiB of slack are added, as net/http did). It defaults to 16 KiB.
	MaxHeaderBytes int
	// MaxConns bounds open connections; more are closed at once. It defaults to 10,000.
	MaxConns int
	// MaxConnsPerIP bounds open connections from one client address (the socket's, not
	// X-Forwarded-For), so that one host cannot take every slot; more are closed at once.
	// It defaults to 256.
	MaxConnsPerIP int
	// RetryAfter is sent, in whole seconds (at least 1), with 503 when a stream is listed
	// but no origin is eligible. It defaults to 2 seconds.
	RetryAfter time.Duration
	// Steering, when set, turns on HLS content steering (README, "HLS content steering"):
	// GET of an HLS entry (/NAME/index.m3u8) answers 200 with a multivariant playlist that
	// lists NAME's media playlist once per copy the Copier returns (one pathway each, the
	// first being the origin the redirect would name), and SteeringPath answers the pathway
	// priority for the viewer. A stream announced with codecs other than H.264 and AAC
	// keeps the 302 (its origins serve another playlist layout). Nil (the default) redirects
	// every request.
	Steering Copier
	// SteeringTTL is the TTL of steering answers, in whole seconds (rounded up, at least 1).
	// It defaults to 5 seconds.
	SteeringTTL time.Duration
	// Logger receives one line per request outcome. It defaults to slog.Default().
	Logger *slog.Logger
	// Metrics counts outcomes and resolve latency. It may be nil.
	Metrics Metrics

	ln      net.Listener
	rejects netcap.RejectLog
	srv     *wire
	wg      sync.WaitGroup
	close   sync.Once
}

// Initialize checks the settings, starts listening and serves in the background.
func (s *Server) Initialize() error {
	if s.Resolver == nil || isNil(s.Resolver) {
		return errors.New("httpgw: 'Resolver' is required")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ReadHeaderTimeout", s.ReadHeaderTimeout}, {"ReadTimeout", s.ReadTimeout},
		{"WriteTimeout", s.WriteTimeout}, {"IdleTimeout", s.IdleTimeout},
		{"ShutdownTimeout", s.ShutdownTimeout}, {"RetryAfter", s.RetryAfter}, {"SteeringTTL", s.SteeringTTL},
	} {
		if d.v < 0 {
			return fmt.Errorf("httpgw: '%s' must not be negative", d.name)
		}
	}
	if s.MaxHeaderBytes < 0 || s.MaxConns < 0 || s.MaxConnsPerIP < 0 {
		return errors.New("httpgw: 'MaxHeaderBytes', 'MaxConns' and 'MaxConnsPerIP' must not be negative")
	}
	for _, p := range s.TrustedProxies {
		if !p.IsValid() {
			return fmt.Errorf("httpgw: 'TrustedProxies' holds an invalid prefix %v", p)
		}
	}
	if strings.ContainsAny(s.StickyParam, "&=#? ") {
		return fmt.Errorf("httpgw: 'StickyParam' %q is not a plain parameter name", s.StickyParam)
	}

	logger := orDefault(s.Logger, slog.Default())
	retry := orDefault(s.RetryAfter, DefaultRetryAfter)
	secs := int64((retry + time.Second - 1) / time.Second)
	h := &handler{
		res:        s.Resolver,
		trusted:    s.TrustedProxies,
		sticky:     s.StickyParam,
		authorize:  s.AuthorizePlay,
		retryAfter: []string{strconv.FormatInt(max(secs, 1), 10)},
		log:        logger,
		metrics:    s.Metrics,
	}
	if h.metrics == nil || isNil(h.metrics) {
		h.metrics = nopMetrics{}
	}
	if s.Steering != nil && !isNil(s.Steering) {
		ttl := orDefault(s.SteeringTTL, DefaultSteeringTTL)
		h.steer, h.steerTTL = s.Steering, max(int64((ttl+time.Second-1)/time.Second), 1)
	}

	ln, err := net.Listen("tcp", orDefault(s.Address, DefaultAddress))
	if err != nil {
		return fmt.Errorf("httpgw: %w", err)
	}
	// The caps count TCP connections, so they wrap the socket listener, under TLS. Over a cap
	// a connection is closed at once rather than left in the accept queue, where it would
	// delay every client behind it.
	metrics := h.metrics
	s.rejects = netcap.RejectLog{Logger: logger, Msg: "http connections refused", Count: func(reason string) { metrics.Redirect(proto, gwmetrics.RefusalOutcome(reason)) }}
	s.ln = &netcap.Listener{
		Listener: ln,
		Max:      int64(orDefault(s.MaxConns, DefaultMaxConns)),
		MaxPerIP: int64(orDefault(s.MaxConnsPerIP, DefaultMaxConnsPerIP)),
		// A full listener still takes a new client in place of one silent for a second.
		EvictSilentAfter: netcap.DefaultEvictSilentAfter,
		OnReject:         s.rejects.Reject,
	}
	if s.TLSConfig != nil {
		s.ln = tls.NewListener(s.ln, s.TLSConfig)
	}
	// ReadTimeout bounds a whole request; with no body read, that is the head, which
	// ReadHeaderTimeout already bounds more tightly.
	header := min(orDefault(s.ReadHeaderTimeout, DefaultReadHeaderTimeout), orDefault(s.ReadTimeout, DefaultReadTimeout))
	s.srv = newWire(h, logger, s.ln, header, orDefault(s.IdleTimeout, DefaultIdleTimeout),
		orDefault(s.WriteTimeout, DefaultWriteTimeout), orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.srv.serve()
	}()
	return nil
}

// Addr returns the bound address (useful with port 0), or nil before Initialize.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops listening, lets requests in flight finish for up to ShutdownTimeout, closes
// every connection and returns when the serving goroutine has ended.
func (s *Server) Close() {
	if s.srv == nil {
		return
	}
	s.close.Do(func() {
		s.srv.shutdown(orDefault(s.ShutdownTimeout, DefaultShutdownTimeout))
		s.wg.Wait()
	})
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// isNil catches a nil pointer stored in an interface, which is not == nil.
func isNil(v any) bool {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Chan, reflect.Interface, reflect.Slice:
		return rv.IsNil()
	}
	return false
}
