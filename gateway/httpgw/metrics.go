package httpgw

import "time"

// Metrics receives what the listener counts; gwmetrics.Prom implements it. Implementations
// must be safe for concurrent use.
type Metrics interface {
	// Redirect counts one request outcome (see the Outcome constants) for a protocol.
	Redirect(proto, outcome string)
	// ResolveDuration observes how long the resolver took for one request.
	ResolveDuration(proto string, d time.Duration)
}

type nopMetrics struct{}

func (nopMetrics) Redirect(string, string)               {}
func (nopMetrics) ResolveDuration(string, time.Duration) {}
