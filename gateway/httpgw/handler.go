package httpgw

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
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
	OutcomeBadRequest       = gwmetrics.BadRequest       // 400/431/505: not HTTP/1.x, malformed or too large; closed
	OutcomeMultivariant     = gwmetrics.Multivariant     // 200: HLS multivariant playlist with content steering
	OutcomeSteering         = gwmetrics.Steering         // 200: steering answer, the player's pathway first
	OutcomeSteeringMove     = gwmetrics.SteeringMove     // 200: steering answer moving the player to another pathway
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
	steer      Copier    // nil: no content steering
	steerTTL   int64     // seconds
}

// request is one request as the handler sees it, whichever server parsed it.
type request struct {
	method string // as sent
	path   string // the escaped path as received; "" or not starting with '/' for a target that is no path
	query  string // the raw query as received, without '?'
	remote string // the socket's peer address, host:port
	tls    bool   // the socket speaks TLS
	xfp    string // the first X-Forwarded-Proto header, "" without one
	xff    []string
}

// answer is what the handler decided; the server writes it.
type answer struct {
	status   int
	oc       outcome
	location string // with oOK only
	route    string // resolve.Result.RouteLog of the origin chosen, for the log line
	body     []byte // with oMultivariant and the steering outcomes: the document
}

// body is the text an answer carries for humans (nil: none).
func (oc outcome) body() []byte {
	switch oc {
	case oBadPath:
		return bodyNotStream
	case oBadQuery:
		return bodyBadQuery
	case oBadOrigin:
		return bodyBadOrigin
	case oNotFound:
		return bodyNotFound
	case oUnavailable:
		return bodyUnavailable
	case oError:
		return bodyInternal
	case oMethodNotAllowed:
		return bodyMethod
	case oUnauthorized:
		return bodyForbidden
	}
	return nil
}

// prepared resolves the counters once; every server calls it before the first request.
func (h *handler) prepared() *handler {
	if h.count == nil {
		m := h.metrics
		if m == nil || isNil(m) {
			m = nopMetrics{}
		}
		h.count = prepare(m)
	}
	return h
}

// router returns the handler as an http.Handler (the benchmarks' net/http baseline).
func (h *handler) router() http.Handler { return h.prepared() }

// serve answers one request: GET and HEAD of any path go to the redirect, OPTIONS to the CORS
// preflight and the rest to 405; a target that is no path is a bad path. It counts the answer
// and logs one line; start is when the request began.
func (h *handler) serve(r *request, start time.Time) answer {
	var a answer
	client, sticky, origin := "", false, ""
	switch {
	case r.method != http.MethodGet && r.method != http.MethodHead && r.method != http.MethodOptions:
		a = answer{status: http.StatusMethodNotAllowed, oc: oMethodNotAllowed}
	case r.path != "" && r.path[0] != '/':
		a = answer{status: http.StatusNotFound, oc: oBadPath}
	case r.method == http.MethodOptions:
		// Browsers never follow a redirect on a preflight, and the answer does not depend on
		// the stream, so it may be cached.
		a = answer{status: http.StatusNoContent, oc: oPreflight}
	case h.steer != nil && r.path == SteeringPath:
		a, client, sticky, origin = h.steering(r)
	default:
		a, client, sticky, origin = h.redirect(r)
	}
	h.count.inc[a.oc]()
	h.logLine(r, start, a, client, origin, sticky)
	return a
}

// viewer identifies the player of r asking for name with query (the stream URL's, or the
// one a steering request carries): its address, its stickiness key (http.sticky_param's
// value when the query has one, else the address), whether it came over TLS, and whether
// its play token (when tokens are checked) allows it.
func (h *handler) viewer(r *request, name, query string) (client, key string, sticky, secure, allowed bool) {
	client, secure = h.peerOf(r)
	key = client
	if v := queryValue(query, h.sticky); v != "" {
		key, sticky = v, true
	}
	allowed = h.authorize == nil || h.authorize(name, query, client) == nil
	return client, key, sticky, secure, allowed
}

// redirect answers GET and HEAD for a stream URL.
func (h *handler) redirect(r *request) (a answer, client string, sticky bool, origin string) {
	name, kind, ok := streamname.FromHTTPPath(r.path)
	if !ok {
		return answer{status: http.StatusNotFound, oc: oBadPath}, "", false, ""
	}
	if !streamname.ValidQuery(r.query) {
		return answer{status: http.StatusBadRequest, oc: oBadQuery}, "", false, ""
	}
	client, key, sticky, secure, allowed := h.viewer(r, name, r.query)
	if !allowed {
		return answer{status: http.StatusForbidden, oc: oUnauthorized}, client, sticky, ""
	}

	if h.steer != nil && kind == streamname.HLSMaster {
		if a, origin, handled := h.multivariant(r, name, key, secure); handled {
			return a, client, sticky, origin
		}
	}

	// Two monotonic clock reads (vDSO, tens of ns) against microseconds per request.
	t0 := time.Now()
	res := h.res.Resolve(resolve.Request{Name: name, Proto: resolve.ProtoHTTP, Secure: secure, Client: key, Arrival: true})
	h.count.resolve(time.Since(t0))

	switch res.Outcome {
	case resolve.OK:
		loc, ok := streamname.Location(res.BaseURL, r.path, r.query)
		if !ok {
			return answer{status: http.StatusBadGateway, oc: oBadOrigin}, client, sticky, res.OriginID
		}
		return answer{status: http.StatusFound, oc: oOK, location: loc, route: res.RouteLog()}, client, sticky, res.OriginID
	case resolve.NotFound:
		return answer{status: http.StatusNotFound, oc: oNotFound}, client, sticky, ""
	case resolve.Unavailable:
		return answer{status: http.StatusServiceUnavailable, oc: oUnavailable}, client, sticky, ""
	}
	return answer{status: http.StatusInternalServerError, oc: oError}, client, sticky, ""
}

// logLine logs one line per request. Outcomes a client can provoke at will without naming a
// stream (bad path, bad query, preflight, 405) log at Debug so scanners cannot flood the log;
// stream outcomes at Info (a player asks the gateway once per session: later playlist and
// segment URLs resolve against the origin); faults at Error. The line goes to the process's
// log sink, which never blocks (cli.AsyncWriter drops and counts when the sink is slow).
func (h *handler) logLine(r *request, start time.Time, a answer, client, origin string, sticky bool) {
	level := slog.LevelInfo
	switch a.oc {
	case oBadPath, oBadQuery, oPreflight, oMethodNotAllowed, oBadRequest:
		level = slog.LevelDebug
	case oSteering:
		// A steering player asks every TTL; only answers that move it are news.
		level = slog.LevelDebug
	case oBadOrigin, oError:
		level = slog.LevelError
	}
	ctx := context.Background()
	if !h.log.Enabled(ctx, level) {
		return
	}
	if client == "" {
		client, _ = h.peerOf(r)
	}
	path := r.path
	if len(path) > maxLogPath {
		path = path[:maxLogPath] + "..."
	}
	// The record is built here rather than by Logger.LogAttrs, which also walks the stack for
	// the caller's PC (3 % of a keep-alive redirect's CPU); no handler here adds the source.
	now := time.Now()
	rec := slog.NewRecord(now, level, "http request", 0)
	rec.AddAttrs(
		slog.String("method", r.method),
		slog.String("path", path),
		slog.String("client", client),
		slog.Bool("sticky", sticky),
		slog.String("outcome", outcomeNames[a.oc]),
		slog.String("origin", origin),
		slog.String("route", a.route),
		slog.Int("status", a.status),
		slog.Duration("duration", now.Sub(start)),
	)
	_ = h.log.Handler().Handle(ctx, rec)
}

// ServeHTTP serves the handler under net/http (the in-process benchmarks' baseline; the
// listener itself runs its own HTTP/1.1 server, see conn.go). A target that is no path
// (e.g. "OPTIONS *" is answered by net/http itself) is a bad path.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rq := request{method: r.Method, path: r.URL.EscapedPath(), query: r.URL.RawQuery, remote: r.RemoteAddr,
		tls: r.TLS != nil, xff: r.Header["X-Forwarded-For"]}
	if r.URL.Path != "" && r.URL.Path[0] != '/' {
		rq.path = r.URL.Path
	}
	if xfp := r.Header["X-Forwarded-Proto"]; len(xfp) > 0 {
		rq.xfp = xfp[0]
	}
	a := h.serve(&rq, start)
	hdr := w.Header()
	switch a.oc {
	case oPreflight:
		hdr["Access-Control-Allow-Origin"] = hAnyOrigin
		hdr["Access-Control-Allow-Methods"] = hAllow
		hdr["Access-Control-Allow-Headers"] = hAnyHeader
		hdr["Access-Control-Max-Age"] = hCORSMaxAge
		hdr["Allow"] = hAllow
	case oMethodNotAllowed:
		hdr["Allow"] = hAllow
		fallthrough
	default:
		hdr["Cache-Control"] = hNoStore
		hdr["Access-Control-Allow-Origin"] = hAnyOrigin
	}
	switch a.oc {
	case oOK:
		hdr["Location"] = []string{a.location}
		hdr["Content-Length"] = hContentZero
	case oUnavailable:
		hdr["Retry-After"] = h.retryAfter
	}
	body := a.oc.body()
	if body != nil {
		hdr["Content-Type"] = hText
		hdr["X-Content-Type-Options"] = hNoSniff
	}
	if a.body != nil {
		body = a.body
		hdr["Content-Type"] = []string{a.oc.contentType()}
		hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(a.status)
	if body != nil && r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
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
