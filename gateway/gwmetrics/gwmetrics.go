// Package gwmetrics is the gateway's one metric vocabulary: outcome names and the Prometheus series every listener counts into.
package gwmetrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peergate/peergate/internal/netcap"
)

// Outcomes, as logged and counted by every listener (the outcome label).
const (
	OK               = "ok"                 // redirected (HTTP 302, RTSP 302, RTMP redirect) or relayed to its end
	NotFound         = "not_found"          // no origin lists the name
	Unavailable      = "unavailable"        // listed, nobody eligible (503, RTMP error status)
	BadPath          = "bad_path"           // not a stream URL (or hostile)
	BadQuery         = "bad_query"          // query with bytes a Location must not carry
	BadOrigin        = "bad_origin"         // the chosen origin's base URL was refused (502)
	BadRequest       = "bad_request"        // not the protocol, too large, malformed: error and close
	MethodNotAllowed = "method_not_allowed" // 405
	Preflight        = "preflight"          // HTTP 204: CORS preflight / OPTIONS
	Error            = "error"              // the resolver gave no outcome (500)
	OriginFailed     = "origin_failed"      // relay: the origin refused, failed or went away
	ClientGone       = "client_gone"        // relay: the client left or stalled past its deadline
	Refused          = "refused"            // over a listener's connection cap
	RefusedPerIP     = "refused_per_ip"     // over a listener's per-client-address connection cap
	EvictedSilent    = "evicted_silent"     // silent since accept, closed to let a new client into a full listener
	Multivariant     = "multivariant"       // HTTP 200: an HLS multivariant playlist listing every copy as a pathway (content steering)
	Steering         = "steering"           // HTTP 200: a steering answer keeping the player on its pathway
	SteeringMove     = "steering_move"      // HTTP 200: a steering answer putting another pathway first
	Unauthorized     = "unauthorized"       // publisher without a valid publish key, player without a valid play token (RTMP Publish.Unauthorized / Play.Failed, HTTP and RTSP 403)
)

// Relay modes and roles (labels of the relay series).
const (
	ModeRedirect = "redirect"
	ModeRelay    = "relay"
	RolePlay     = "play"
	RolePublish  = "publish"
	ToOrigin     = "to_origin"
	ToClient     = "to_client"
)

// Prom is the Prometheus-backed set of gateway series; create one per registry and share it
// between the gateway's listeners (the proto label tells them apart). Its methods are safe for
// concurrent use and on a nil *Prom (they do nothing).
type Prom struct {
	redirects   *prometheus.CounterVec
	resolve     *prometheus.HistogramVec
	relays      *prometheus.CounterVec
	relayActive *prometheus.GaugeVec
	relayBytes  *prometheus.CounterVec
}

// New defines on reg:
//   - peergate_gateway_redirects_total{proto,outcome}: redirect-path answers;
//   - peergate_gateway_resolve_seconds{proto}: time spent choosing an origin;
//   - peergate_gateway_relays_total{proto,role,outcome}: relayed sessions, counted when they end;
//   - peergate_gateway_relays_active{proto,role}: relayed sessions open now;
//   - peergate_gateway_relay_bytes_total{proto,direction}: bytes passed to_origin and to_client.
func New(reg prometheus.Registerer) (*Prom, error) {
	m := &Prom{
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peergate_gateway_redirects_total",
			Help: "Gateway redirect-path answers by protocol and outcome.",
		}, []string{"proto", "outcome"}),
		resolve: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "peergate_gateway_resolve_seconds",
			Help: "Time spent choosing an origin.",
			// The resolver answers from memory in well under a microsecond to a few microseconds.
			Buckets: prometheus.ExponentialBuckets(250e-9, 4, 9),
		}, []string{"proto"}),
		relays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peergate_gateway_relays_total",
			Help: "Relayed sessions (players and publishers the gateway carried to an origin) by protocol, role and outcome, counted at their end.",
		}, []string{"proto", "role", "outcome"}),
		relayActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "peergate_gateway_relays_active",
			Help: "Relayed sessions open now.",
		}, []string{"proto", "role"}),
		relayBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peergate_gateway_relay_bytes_total",
			Help: "Bytes relayed, by protocol and direction (to_origin, to_client).",
		}, []string{"proto", "direction"}),
	}
	for _, c := range []prometheus.Collector{m.redirects, m.resolve, m.relays, m.relayActive, m.relayBytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Redirect counts one redirect-path outcome for a protocol.
func (m *Prom) Redirect(proto, outcome string) {
	if m == nil {
		return
	}
	m.redirects.WithLabelValues(proto, outcome).Inc()
}

// ResolveDuration observes how long the resolver took for one request.
func (m *Prom) ResolveDuration(proto string, d time.Duration) {
	if m == nil {
		return
	}
	m.resolve.WithLabelValues(proto).Observe(d.Seconds())
}

// RelayStart counts a relayed session as open; call RelayEnd with its outcome when it closes.
func (m *Prom) RelayStart(proto, role string) {
	if m == nil {
		return
	}
	m.relayActive.WithLabelValues(proto, role).Inc()
}

// RelayEnd closes what RelayStart opened and counts the session's outcome.
func (m *Prom) RelayEnd(proto, role, outcome string) {
	if m == nil {
		return
	}
	m.relayActive.WithLabelValues(proto, role).Dec()
	m.relays.WithLabelValues(proto, role, outcome).Inc()
}

// RelayBytes adds n bytes relayed in direction (ToOrigin or ToClient).
func (m *Prom) RelayBytes(proto, direction string, n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.relayBytes.WithLabelValues(proto, direction).Add(float64(n))
}

// RefusalOutcome is the outcome a listener counts for a connection netcap refused for reason
// (netcap.ReasonMaxConns, ReasonMaxConnsPerIP, ReasonEvicted).
func RefusalOutcome(reason string) string {
	switch reason {
	case netcap.ReasonMaxConnsPerIP:
		return RefusedPerIP
	case netcap.ReasonEvicted:
		return EvictedSilent
	}
	return Refused
}

func nop() {}

// RedirectCounter returns the increment of peergate_gateway_redirects_total{proto,outcome},
// resolved once: a hot path calls it without a label lookup per request. On a nil *Prom it
// does nothing.
func (m *Prom) RedirectCounter(proto, outcome string) func() {
	if m == nil {
		return nop
	}
	return m.redirects.WithLabelValues(proto, outcome).Inc
}

// ResolveObserver returns the observation of peergate_gateway_resolve_seconds{proto},
// resolved once. On a nil *Prom it does nothing.
func (m *Prom) ResolveObserver(proto string) func(time.Duration) {
	if m == nil {
		return func(time.Duration) {}
	}
	o := m.resolve.WithLabelValues(proto)
	return func(d time.Duration) { o.Observe(d.Seconds()) }
}

// Nop counts nothing: what a listener uses when it is given no Metrics.
type Nop struct{}

func (Nop) Redirect(string, string)               {}
func (Nop) ResolveDuration(string, time.Duration) {}
func (Nop) RelayStart(string, string)             {}
func (Nop) RelayEnd(string, string, string)       {}
func (Nop) RelayBytes(string, string, int64)      {}
