package httpgw

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/peergate/peergate/gateway/gwmetrics"
	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/shared/streamname"
)

// Outcomes, as logged and counted.
const (
	OutcomeOK               = gwmetrics.OK               // 302 to an origin
	OutcomeNotFound         = gwmetrics.NotFound         // 404: no origin lists the name
	OutcomeUnavailable      = gwmetrics.Unavailable      // 503: listed, nobody eligible
	OutcomeBadPath          = gwmetrics.BadPath          // 404: not a stream URL (or hostile)
	OutcomeBadQuery         = gwmetrics.BadQuery         // 400: query with bytes a Location must not carry
	OutcomeBadOrigin        = gwmetrics.BadOrigin        // 502: the chosen origin's base URL was refused
	OutcomeError            = gwmetrics.Error            // 500: the resolver gave no outcome
	OutcomeMethodNotAllowed = gwmetrics.MethodNotAllowed // 405
	OutcomePreflight        = gwmetrics.Preflight        // 204: CORS preflight / OPTIONS
	OutcomeUnauthorized     = gwmetrics.Unauthorized     // 403: AuthorizePlay refused the play token
)

const (
	proto       = "http"
	allow       = "GET, HEAD, OPTIONS"
	maxLogPath  = 256 // hostile paths may be 16 KiB; the log keeps the start
	corsMaxAge  = "86400"
	contentText = "text/plain; charset=utf-8"
)

// Constant header values are shared between responses; net/http only reads them.
var (
	hNoStore     = []string{"no-store"}
	hAnyOrigin   = []string{"*"}
	hAllow       = []string{allow}
	hText        = []string{contentText}
	hNoSniff     = []string{"nosniff"}
	hAnyHeader   = []string{"*"}
	hCORSMaxAge  = []string{corsMaxAge}
	hContentZero = []string{"0"}
)

// Prepared bodies: no conversion per request.
var (
	bodyNotStream   = []byte("not a stream URL\n")
	bodyBadQuery    = []byte("bad query\n")
	bodyBadOrigin   = []byte("bad origin address\n")
	bodyNotFound    = []byte("stream not found\n")
	bodyUnavailable = []byte("no origin available, retry later\n")
	bodyInternal    = []byte("internal error\n")
	bodyMethod      = []byte("method not allowed\n")
	bodyForbidden   = []byte("play not authorized\n")
)

type handler struct {
	res        Resolver
	trusted    []netip.Prefix
	sticky     string
	authorize  func(name, query, client string) error
	retryAfter []string
	log        *slog.Logger
	metrics    Metrics
	count      *counters // resolved from metrics once
}

// router returns the listener's handler: a method switch, no general router on the hot path.
func (h *handler) router() http.Handler {
	if h.count == nil {
		m := h.metrics
		if m == nil || isNil(m) {
			m = nopMetrics{}
		}
		h.count = prepare(m)
	}
	return h
}

// ServeHTTP routes GET/HEAD of any path to the redirect, OPTIONS to the CORS preflight and
// the rest to 405; a target that is no path (e.g. "OPTIONS *" is answered by net/http
// itself) is a bad path.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		h.methodNotAllowed(w, r)
		return
	}
	if p := r.URL.Path; p != "" && p[0] != '/' {
		h.notFound(w, r)
		return
	}
	if r.Method == http.MethodOptions {
		h.preflight(w, r)
		return
	}
	h.redirect(w, r)
}

// redirect answers GET and HEAD for a stream URL.
func (h *handler) redirect(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	path := r.URL.EscapedPath()
	hdr := w.Header()
	hdr["Cache-Control"] = hNoStore
	hdr["Access-Control-Allow-Origin"] = hAnyOrigin

	name, _, ok := streamname.FromHTTPPath(path)
	if !ok {
		h.finish(w, r, start, http.StatusNotFound, oBadPath, "", "", false, bodyNotStream)
		return
	}
	if !streamname.ValidQuery(r.URL.RawQuery) {
		h.finish(w, r, start, http.StatusBadRequest, oBadQuery, "", "", false, bodyBadQuery)
		return
	}
	client, secure := h.peer(r)
	key, sticky := client, false
	if v := queryValue(r.URL.RawQuery, h.sticky); v != "" {
		key, sticky = v, true
	}
	if h.authorize != nil {
		if err := h.authorize(name, r.URL.RawQuery, client); err != nil {
			h.finish(w, r, start, http.StatusForbidden, oUnauthorized, client, "", sticky, bodyForbidden)
			return
		}
	}

	// Two monotonic clock reads (vDSO, tens of ns) against microseconds per request.
	t0 := time.Now()
	res := h.res.Resolve(resolve.Request{Name: name, Proto: resolve.ProtoHTTP, Secure: secure, Client: key})
	h.count.resolve(time.Since(t0))

	switch res.Outcome {
	case resolve.OK:
		loc, ok := streamname.Location(res.BaseURL, path, r.URL.RawQuery)
		if !ok {
			h.finish(w, r, start, http.StatusBadGateway, oBadOrigin, client, res.OriginID, sticky, bodyBadOrigin)
			return
		}
		hdr["Location"] = []string{loc}
		hdr["Content-Length"] = hContentZero
		h.finish(w, r, start, http.StatusFound, oOK, client, res.OriginID, sticky, nil)
	case resolve.NotFound:
		h.finish(w, r, start, http.StatusNotFound, oNotFound, client, "", sticky, bodyNotFound)
	case resolve.Unavailable:
		hdr["Retry-After"] = h.retryAfter
		h.finish(w, r, start, http.StatusServiceUnavailable, oUnavailable, client, "", sticky, bodyUnavailable)
	default:
		h.finish(w, r, start, http.StatusInternalServerError, oError, client, "", sticky, bodyInternal)
	}
}

// preflight answers OPTIONS on any path: browsers never follow a redirect on a preflight,
// and the answer does not depend on the stream, so it may be cached.
func (h *handler) preflight(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	hdr := w.Header()
	hdr["Access-Control-Allow-Origin"] = hAnyOrigin
	hdr["Access-Control-Allow-Methods"] = hAllow
	hdr["Access-Control-Allow-Headers"] = hAnyHeader
	hdr["Access-Control-Max-Age"] = hCORSMaxAge
	hdr["Allow"] = hAllow
	h.finish(w, r, start, http.StatusNoContent, oPreflight, "", "", false, nil)
}

func (h *handler) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	hdr := w.Header()
	hdr["Allow"] = hAllow
	hdr["Access-Control-Allow-Origin"] = hAnyOrigin
	hdr["Cache-Control"] = hNoStore
	h.finish(w, r, start, http.StatusMethodNotAllowed, oMethodNotAllowed, "", "", false, bodyMethod)
}

// notFound answers a target that is not a path.
func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	hdr := w.Header()
	hdr["Access-Control-Allow-Origin"] = hAnyOrigin
	hdr["Cache-Control"] = hNoStore
	h.finish(w, r, start, http.StatusNotFound, oBadPath, "", "", false, bodyNotStream)
}

// finish writes the answer, counts it and logs one line. Outcomes a client can provoke at
// will without naming a stream (bad path, bad query, preflight, 405) log at Debug so
// scanners cannot flood the log; stream outcomes at Info (a player asks the gateway once per
// session: later playlist and segment URLs resolve against the origin); faults at Error.
func (h *handler) finish(w http.ResponseWriter, r *http.Request, start time.Time, status int, oc outcome, client, origin string, sticky bool, body []byte) {
	hdr := w.Header()
	if body != nil {
		hdr["Content-Type"] = hText
		hdr["X-Content-Type-Options"] = hNoSniff
	}
	w.WriteHeader(status)
	if body != nil && r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	h.count.inc[oc]()

	level := slog.LevelInfo
	switch oc {
	case oBadPath, oBadQuery, oPreflight, oMethodNotAllowed:
		level = slog.LevelDebug
	case oBadOrigin, oError:
		level = slog.LevelError
	}
	ctx := context.Background()
	if !h.log.Enabled(ctx, level) {
		return
	}
	if client == "" {
		client, _ = h.peer(r)
	}
	path := r.URL.EscapedPath()
	if len(path) > maxLogPath {
		path = path[:maxLogPath] + "..."
	}
	h.log.LogAttrs(ctx, level, "http request",
		slog.String("method", r.Method),
		slog.String("path", path),
		slog.String("client", client),
		slog.Bool("sticky", sticky),
		slog.String("outcome", outcomeNames[oc]),
		slog.String("origin", origin),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(start)),
	)
}

// queryValue returns the raw value of the first non-empty key=value pair named key.
func queryValue(rawQuery, key string) string {
	if key == "" {
		return ""
	}
	for q := rawQuery; q != ""; {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if k, v, ok := strings.Cut(pair, "="); ok && k == key && v != "" {
			return v
		}
	}
	return ""
}
