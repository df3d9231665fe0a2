// Package admin serves the side listener of both binaries: health, readiness, Prometheus metrics and extra JSON endpoints.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
)

// Limits of the admin listener; it serves operators and scrapers, not viewers.
const (
	DefaultMaxConns   = 64
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
	shutdownTimeout   = time.Second
)

// Server is the admin HTTP listener. Set the fields, call Initialize, then Close.
type Server struct {
	// Address to listen on, e.g. ":9080" or "127.0.0.1:0".
	Address string
	// Ready reports readiness: nil means ready, an error is the reason for 503. A nil func is always ready.
	Ready func() error
	// Note, if set, qualifies a ready answer ("ready: NOTE"), e.g. that the registry is away and
	// the last good copy is served: still ready, but an operator should know.
	Note func() string
	// Gatherer feeds /metrics. It defaults to an empty registry.
	Gatherer prometheus.Gatherer
	// Handlers are extra routes (net/http ServeMux patterns), e.g. "GET /api/v1/origins".
	Handlers map[string]http.Handler
	// MaxConns bounds concurrent connections. It defaults to DefaultMaxConns.
	MaxConns int
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	ln   net.Listener
	srv  *http.Server
	wg   sync.WaitGroup
	once sync.Once
}

// Initialize binds the listener and starts serving.
func (s *Server) Initialize() error {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.Gatherer == nil {
		s.Gatherer = prometheus.NewRegistry()
	}
	if s.MaxConns <= 0 {
		s.MaxConns = DefaultMaxConns
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(s.Logger.Handler(), slog.LevelError),
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	for pattern, h := range s.Handlers {
		mux.Handle(pattern, h)
	}
	ln, err := net.Listen("tcp", s.Address)
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", s.Address, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelDebug),
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(netutil.LimitListener(ln, s.MaxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Logger.Error("admin listener stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address; valid after Initialize.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the listener and waits for in-flight requests, up to a few seconds.
func (s *Server) Close() {
	s.once.Do(func() {
		if s.srv == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
		}
		s.wg.Wait()
	})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.Ready != nil {
		if err := s.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
	}
	if s.Note != nil {
		if n := s.Note(); n != "" {
			_, _ = fmt.Fprintf(w, "ready: %s\n", n)
			return
		}
	}
	_, _ = w.Write([]byte("ready\n"))
}

// WriteJSON answers v as indented JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError answers {"error": msg} with the given status.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, map[string]string{"error": msg})
}

// NewRegistry returns a Prometheus registry with the Go and process collectors and
// peergate_build_info{binary,version}, the series every peergate binary exports.
func NewRegistry(binary, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "peergate_build_info", Help: "Always 1; labels name the binary and its version.",
			ConstLabels: prometheus.Labels{"binary": binary, "version": version},
		}, func() float64 { return 1 }),
	)
	return reg
}

// Authorize guards an endpoint that changes state: it reports whether r carries
// "Authorization: Bearer TOKEN" for the configured token (compared in constant time). If not, it
// has answered: 403 when no token is configured (the endpoint is disabled), 401 with a
// WWW-Authenticate challenge when the header is missing or wrong.
func Authorize(w http.ResponseWriter, r *http.Request, token string) bool {
	if token == "" {
		WriteError(w, http.StatusForbidden, "disabled: set admin.token (env PEERGATE_ADMIN_TOKEN) to enable endpoints that change state")
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="peergate-admin"`)
		WriteError(w, http.StatusUnauthorized, "unauthorized: want Authorization: Bearer <admin.token>")
		return false
	}
	return true
}
