package httpgw

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics receives what the listener counts. Implementations must be safe for concurrent use.
type Metrics interface {
	// Redirect counts one request outcome (see the Outcome constants) for a protocol.
	Redirect(proto, outcome string)
	// ResolveDuration observes how long the resolver took for one request.
	ResolveDuration(proto string, d time.Duration)
}

type nopMetrics struct{}

func (nopMetrics) Redirect(string, string)               {}
func (nopMetrics) ResolveDuration(string, time.Duration) {}

// PromMetrics is a Prometheus-backed Metrics; create one per registry and share it
// between the gateway's listeners (the proto label tells them apart).
type PromMetrics struct {
	redirects *prometheus.CounterVec
	resolve   *prometheus.HistogramVec
}

var _ Metrics = (*PromMetrics)(nil)

// NewMetrics defines peergate_gateway_redirects_total{proto,outcome} and
// peergate_gateway_resolve_seconds{proto} on reg.
func NewMetrics(reg prometheus.Registerer) (*PromMetrics, error) {
	m := &PromMetrics{
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peergate_gateway_redirects_total",
			Help: "Gateway requests by protocol and outcome.",
		}, []string{"proto", "outcome"}),
		resolve: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "peergate_gateway_resolve_seconds",
			Help: "Time spent choosing an origin.",
			// The resolver answers from memory in well under a microsecond to a few microseconds.
			Buckets: prometheus.ExponentialBuckets(250e-9, 4, 9),
		}, []string{"proto"}),
	}
	for _, c := range []prometheus.Collector{m.redirects, m.resolve} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Redirect implements Metrics.
func (m *PromMetrics) Redirect(proto, outcome string) {
	m.redirects.WithLabelValues(proto, outcome).Inc()
}

// ResolveDuration implements Metrics.
func (m *PromMetrics) ResolveDuration(proto string, d time.Duration) {
	m.resolve.WithLabelValues(proto).Observe(d.Seconds())
}
