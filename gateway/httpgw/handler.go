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

type handler struct {
	res        Resolver
	trusted    []netip.Prefix
	sticky     string
	retryAfter []string
	log        *slog.Logger
	metrics    Metrics
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
		h.finish(w, r, start, http.StatusNotFound, OutcomeBadPath, "", "", false, "not a stream URL\n")
		return
	}
	if !streamname.ValidQuery(r.URL.RawQuery) {
		h.finish(w, r, start, http.StatusBadRequest, OutcomeBadQuery, "", "", false, "bad query\n")
		return
	}
	client, secure := h.peer(r)
	key, sticky := client, false
	if v := queryValue(r.URL.RawQuery, h.sticky); v != "" {
		key, sticky = v, true
	}

	t0 := time.Now()
	res := h.res.Resolve(resolve.Request{Name: name, Proto: resolve.ProtoHTTP, Secure: secure, Client: key})
	h.metrics.ResolveDuration(proto, time.Since(t0))

	switch res.Outcome {
	case resolve.OK:
		loc, ok := streamname.Location(res.BaseURL, path, r.URL.RawQuery)
		if !ok {
			h.finish(w, r, start, http.StatusBadGateway, OutcomeBadOrigin, client, res.OriginID, sticky, "bad origin address\n")
			return
		}
		hdr["Location"] = []string{loc}
		hdr["Content-Length"] = hContentZero
		h.finish(w, r, start, http.StatusFound, OutcomeOK, client, res.OriginID, sticky, "")
	case resolve.NotFound:
		h.finish(w, r, start, http.StatusNotFound, OutcomeNotFound, client, "", sticky, "stream not found\n")
	case resolve.Unavailable:
		hdr["Retry-After"] = h.retryAfter
		h.finish(w, r, start, http.StatusServiceUnavailable, OutcomeUnavailable, client, "", sticky, "no origin available, retry later\n")
	default:
		h.finish(w, r, start, http.StatusInternalServerError, OutcomeError, client, "", sticky, "internal error\n")
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
	h.finish(w, r, start, http.StatusNoContent, OutcomePreflight, "", "", false, "")
}

func (h *handler) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	hdr := w.Header()
	hdr["Allow"] = hAllow
	hdr["Access-Control-Allow-Origin"] = hAnyOrigin
	hdr["Cache-Control"] = hNoStore
	h.finish(w, r, start, http.StatusMethodNotAllowed, OutcomeMethodNotAllowed, "", "", false, "method not allowed\n")
}

// notFound catches what the router does not route (e.g. "OPTIONS *").
func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	hdr := w.Header()
	hdr["Access-Control-Allow-Origin"] = hAnyOrigin
	hdr["Cache-Control"] = hNoStore
	h.finish(w, r, start, http.StatusNotFound, OutcomeBadPath, "", "", false, "not a stream URL\n")
}

// finish writes the answer, counts it and logs one line. Outcomes a client can provoke at
// will without naming a stream (bad path, bad query, preflight, 405) log at Debug so
// scanners cannot flood the log; stream outcomes at Info (a player asks the gateway once per
// session: later playlist and segment URLs resolve against the origin); faults at Error.
func (h *handler) finish(w http.ResponseWriter, r *http.Request, start time.Time, status int, outcome, client, origin string, sticky bool, body string) {
	hdr := w.Header()
	if body != "" {
		hdr["Content-Type"] = hText
		hdr["X-Content-Type-Options"] = hNoSniff
	}
	w.WriteHeader(status)
	if body != "" && r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
	h.metrics.Redirect(proto, outcome)

	level := slog.LevelInfo
	switch outcome {
	case OutcomeBadPath, OutcomeBadQuery, OutcomePreflight, OutcomeMethodNotAllowed:
		level = slog.LevelDebug
	case OutcomeBadOrigin, OutcomeError:
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
		slog.String("outcome", outcome),
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
