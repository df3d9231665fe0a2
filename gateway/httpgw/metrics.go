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

// PreparedMetrics is optionally implemented by a Metrics (gwmetrics.Prom does) to hand out
// series resolved once at Initialize, so a request costs no label lookup.
type PreparedMetrics interface {
	// RedirectCounter returns the increment of one (proto, outcome) series.
	RedirectCounter(proto, outcome string) func()
	// ResolveObserver returns the observation of one proto's resolve latency.
	ResolveObserver(proto string) func(time.Duration)
}

type nopMetrics struct{}

func (nopMetrics) Redirect(string, string)               {}
func (nopMetrics) ResolveDuration(string, time.Duration) {}

// outcome indexes the listener's outcomes, so a request finds its counter without a lookup.
type outcome uint8

const (
	oOK outcome = iota
	oNotFound
	oUnavailable
	oBadPath
	oBadQuery
	oBadOrigin
	oError
	oMethodNotAllowed
	oPreflight
	oUnauthorized
	oBadRequest
	oMultivariant
	oSteering
	oSteeringMove
	nOutcomes
)

var outcomeNames = [nOutcomes]string{
	OutcomeOK, OutcomeNotFound, OutcomeUnavailable, OutcomeBadPath, OutcomeBadQuery,
	OutcomeBadOrigin, OutcomeError, OutcomeMethodNotAllowed, OutcomePreflight,
	OutcomeUnauthorized, OutcomeBadRequest, OutcomeMultivariant, OutcomeSteering, OutcomeSteeringMove,
}

// contentType is the Content-Type of an answer carrying a document.
func (oc outcome) contentType() string {
	if oc == oMultivariant {
		return contentM3U8
	}
	return contentJSON
}

// counters are the listener's series, resolved once at Initialize.
type counters struct {
	inc     [nOutcomes]func()
	resolve func(time.Duration)
}

func prepare(m Metrics) *counters {
	c := &counters{}
	pm, ok := m.(PreparedMetrics)
	for i, name := range outcomeNames {
		if ok {
			c.inc[i] = pm.RedirectCounter(proto, name)
		} else {
			c.inc[i] = func() { m.Redirect(proto, name) }
		}
	}
	if ok {
		c.resolve = pm.ResolveObserver(proto)
	} else {
		c.resolve = func(d time.Duration) { m.ResolveDuration(proto, d) }
	}
	return c
}
