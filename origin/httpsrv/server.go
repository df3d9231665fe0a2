// Package httpsrv serves the origin's HTTP outputs (HLS, HTTP MPEG-TS, embed.html) from the media table.
package httpsrv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/peergate/peergate/internal/netcap"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/streamname"
)

// HLS variants selectable by config (hls.variant).
const (
	VariantMPEGTS     = "mpegts"
	VariantFMP4       = "fmp4"
	VariantLowLatency = "lowlatency"
)

// HLSConfig tunes the HLS muxers; the zero value works.
type HLSConfig struct {
	// Variant is "mpegts", "fmp4" or "lowlatency". It defaults to "mpegts". Streams whose
	// codecs MPEG-TS cannot carry (H.265, Opus) use fMP4 whatever the setting.
	Variant string
	// SegmentCount is how many segments the playlist keeps. It defaults to 7 (the minimum for low latency).
	// A segment removed from the playlist stays fetchable for its duration plus the longest
	// playlist it was in (RFC 8216 section 6.2.2).
	SegmentCount int
	// SegmentDuration is the minimum segment duration; a segment also waits for a key frame. It defaults to 1 second.
	SegmentDuration time.Duration
	// PartDuration is the minimum LL-HLS part duration. It defaults to 200 ms.
	PartDuration time.Duration
	// SegmentMaxBytes caps one segment in memory. It defaults to 50 MiB.
	SegmentMaxBytes uint64
	// FirstSegmentTimeout bounds how long a first request waits for the muxer's first segment. It defaults to 10 seconds.
	FirstSegmentTimeout time.Duration
	// SessionTimeout ends an HLS viewer that made no request for this long. It defaults to 30 seconds.
	SessionTimeout time.Duration
	// MaxSessions caps counted HLS viewers (memory bound); more are served but not counted per viewer. It defaults to 100000.
	MaxSessions int
	// Lazy creates a stream's muxer on its first HLS request only, instead of when the stream
	// starts (StreamRunning). It defaults to false: eager muxers make the first playlist instant.
	Lazy bool
}

// Server is the origin's HTTP listener. Set the fields, call Initialize, then Close.
type Server struct {
	// Address to listen on, e.g. ":8081" or "127.0.0.1:0".
	Address string
	// Table is the stream table. Required.
	Table *media.Table
	// HLS tunes the HLS muxers.
	HLS HLSConfig
	// ReadHeaderTimeout bounds reading a request's headers. It defaults to 5 seconds.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request. It defaults to 10 seconds.
	ReadTimeout time.Duration
	// WriteTimeout bounds one response (HLS) or one write (MPEG-TS); a slower client is cut off. It defaults to 10 seconds.
	WriteTimeout time.Duration
	// IdleTimeout bounds a keep-alive connection between requests. It defaults to 60 seconds.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps request headers; bigger ones get 431. It defaults to 16 KiB.
	MaxHeaderBytes int
	// MaxConns caps concurrent connections; extra ones are closed at once. It defaults to 4096.
	MaxConns int
	// AuthorizePlay, if set, decides whether a viewer may play NAME: it gets the NAME, the
	// request's raw query and the client's IP address, and a non-nil error answers 403. It
	// runs on the first request of a session: every MPEG-TS and embed.html request, and an
	// HLS request (playlist or segment) of a viewer that has no HLS session yet. An HLS
	// session (same NAME, client address and User-Agent, ended by HLS.SessionTimeout without
	// requests) carries the authorization, so a token that expires mid-play does not stop
	// it, and its later requests need no token. Nil lets anyone play (the default).
	AuthorizePlay func(name, query, client string) error
	// MaxConnsPerIP caps concurrent connections from one client address; extra ones are
	// closed at once. It defaults to 256. Relayed sessions all come from their gateway's
	// address: size it for the relays one gateway carries to this origin.
	MaxConnsPerIP int
	// FirstByteTimeout closes a connection that sends nothing this long after accept,
	// whatever the protocol's own deadlines. It defaults to 5 seconds.
	FirstByteTimeout time.Duration
	// SequenceUpstream, if set, returns the HTTP base URL ("http://10.0.0.5:8081") of the
	// origin NAME is relayed from here, false when NAME is no relay copy. A relay's HLS muxer
	// then numbers its segments like that upstream (see HLSSeqPath). Nil: every muxer numbers
	// from 0 (the default).
	SequenceUpstream func(name string) (string, bool)
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	srv      *http.Server
	ln       *netcap.Listener
	rejects  netcap.RejectLog
	hls      *hlsManager
	sessions *sessions
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closed   atomic.Bool
}

var _ media.Events = (*Server)(nil)

// Initialize listens and serves in the background.
func (s *Server) Initialize() error {
	if s.Table == nil {
		return errors.New("httpsrv: Table is required")
	}
	if err := s.setDefaults(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.Address)
	if err != nil {
		return fmt.Errorf("httpsrv: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.rejects = netcap.RejectLog{Logger: s.Logger, Msg: "http connections refused"}
	s.ln = &netcap.Listener{Listener: ln, Max: int64(s.MaxConns), MaxPerIP: int64(s.MaxConnsPerIP),
		FirstByteTimeout: s.FirstByteTimeout, EvictSilentAfter: netcap.DefaultEvictSilentAfter, OnReject: s.rejects.Reject}
	s.sessions = newSessions(s.HLS.SessionTimeout, s.HLS.MaxSessions)
	s.hls = newHLSManager(s)

	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		ReadTimeout:       s.ReadTimeout,
		// Handlers set their own write deadlines: MPEG-TS bodies never end.
		IdleTimeout:    s.IdleTimeout,
		MaxHeaderBytes: s.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(s.Logger.Handler(), slog.LevelDebug),
		BaseContext:    func(net.Listener) context.Context { return s.ctx },
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Logger.Error("http serve", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.sessions.run(s.ctx)
	}()
	return nil
}

func (s *Server) setDefaults() error {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&s.ReadHeaderTimeout, 5*time.Second)
	def(&s.ReadTimeout, 10*time.Second)
	def(&s.WriteTimeout, 10*time.Second)
	def(&s.IdleTimeout, 60*time.Second)
	if s.MaxHeaderBytes <= 0 {
		s.MaxHeaderBytes = 16 << 10
	}
	if s.MaxConns <= 0 {
		s.MaxConns = 4096
	}
	if s.MaxConnsPerIP <= 0 {
		s.MaxConnsPerIP = netcap.DefaultMaxPerIP
	}
	def(&s.FirstByteTimeout, 5*time.Second)
	h := &s.HLS
	switch h.Variant {
	case "":
		h.Variant = VariantMPEGTS
	case VariantMPEGTS, VariantFMP4, VariantLowLatency:
	default:
		return fmt.Errorf("httpsrv: hls.variant %q must be mpegts, fmp4 or lowlatency", h.Variant)
	}
	if h.SegmentCount <= 0 {
		h.SegmentCount = 7
	}
	if h.Variant == VariantLowLatency && h.SegmentCount < 7 {
		return errors.New("httpsrv: hls.segment_count must be at least 7 for lowlatency")
	}
	if h.SegmentCount < 3 {
		return errors.New("httpsrv: hls.segment_count must be at least 3")
	}
	def(&h.SegmentDuration, time.Second)
	def(&h.PartDuration, 200*time.Millisecond)
	if h.SegmentMaxBytes == 0 {
		h.SegmentMaxBytes = 50 << 20
	}
	def(&h.FirstSegmentTimeout, 10*time.Second)
	def(&h.SessionTimeout, 30*time.Second)
	if h.MaxSessions <= 0 {
		h.MaxSessions = 100000
	}
	return nil
}

// Addr is the listening address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops listening, ends every response and muxer, and returns when all are down.
func (s *Server) Close() {
	if s.closed.Swap(true) || s.srv == nil {
		return
	}
	s.cancel()       // ends MPEG-TS bodies and HLS waits (request contexts derive from s.ctx)
	s.hls.closeAll() // ends the muxers, which wakes requests blocked inside gohlslib
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	s.wg.Wait()
	s.sessions.closeAll()
}

// StreamRunning starts the stream's HLS muxer at once unless HLS.Lazy; main.go adds the
// Server to the Table's receivers (Table.Notify). It never blocks.
func (s *Server) StreamRunning(name string, _ cluster.StreamMeta) {
	if s.HLS.Lazy || s.closed.Load() || s.hls == nil {
		return
	}
	if st := s.Table.Get(name); st != nil {
		s.hls.ensure(st)
	}
}

// StreamStopped does nothing: a muxer ends by itself when its stream's reader gets io.EOF.
func (s *Server) StreamStopped(string) {}

// Stats are the server's own counters.
type Stats struct {
	Conns       int64 // open connections
	Rejected    int64 // connections closed at once by MaxConns
	Muxers      int   // running HLS muxers
	HLSSessions int   // counted HLS viewers
}

// Stats snapshots the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Conns:       s.ln.Active(),
		Rejected:    s.ln.Rejected(),
		Muxers:      s.hls.count(),
		HLSSessions: s.sessions.count(),
	}
}

func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.common)
	r.HandleFunc("/*", s.serve)
	return r
}

// common adds CORS and the default write deadline, answers preflights, and refuses methods other than GET/HEAD.
func (s *Server) common(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// After a cross-origin redirect browsers send Origin: null; "*" covers it.
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Expose-Headers", "Content-Length, Content-Range, Accept-Ranges")
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodOptions:
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "*")
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		default:
			h.Set("Allow", "GET, HEAD, OPTIONS")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		next.ServeHTTP(w, r)
	})
}

// serve dispatches on the path kind: every URL of the layout ends in a known file name.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case HLSJSPath:
		serveHLSJS(w, r)
		return
	case HLSSeqPath:
		s.serveSeq(w, r)
		return
	}
	name, kind, ok := streamname.FromHTTPPath(r.URL.EscapedPath())
	if !ok {
		http.NotFound(w, r)
		return
	}
	if s.AuthorizePlay != nil && !s.authorized(w, r, name, kind) {
		return
	}
	switch kind {
	case streamname.HLSMaster, streamname.HLSPlaylist, streamname.HLSSegment:
		s.serveHLS(w, r, name, kind == streamname.HLSSegment)
	case streamname.MPEGTS:
		s.serveMPEGTS(w, r, name)
	case streamname.Embed:
		s.serveEmbed(w, r, name)
	default:
		http.NotFound(w, r)
	}
}

// authorized runs AuthorizePlay on the first request of a session and answers 403 itself
// when it refuses. Requests of a live HLS session pass without a token.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request, name string, kind streamname.Kind) bool {
	ip := clientIP(r)
	switch kind {
	case streamname.HLSMaster, streamname.HLSPlaylist, streamname.HLSSegment:
		if s.sessions.active(name, ip, r.UserAgent()) {
			return true
		}
	case streamname.MPEGTS, streamname.Embed:
	default:
		return true // answered 404 by serve
	}
	err := s.AuthorizePlay(name, r.URL.RawQuery, ip)
	if err == nil {
		return true
	}
	s.Logger.Info("http play refused", "name", name, "remote", ip, "path", r.URL.Path, "reason", "unauthorized: "+err.Error())
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, "play not authorized", http.StatusForbidden)
	return false
}

// findStream resolves name to a live stream, starting an on-demand source if needed;
// it writes the error response itself and returns nil then.
func (s *Server) findStream(w http.ResponseWriter, r *http.Request, name string) *media.Stream {
	st, err := s.Table.Find(r.Context(), name)
	// An on-demand start may take as long as WriteTimeout: the answer gets its own bound.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.WriteTimeout))
	switch {
	case err == nil:
		return st
	case errors.Is(err, media.ErrNotFound):
		http.Error(w, "stream not found", http.StatusNotFound)
	case errors.Is(err, context.Canceled):
		// The client left; nobody reads the answer.
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "stream unavailable", http.StatusServiceUnavailable)
	}
	return nil
}

// clientIP is the peer's address without port; the origin trusts no forwarding header.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
