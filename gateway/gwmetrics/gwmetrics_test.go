package gwmetrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Pre-resolved handles count into the same series as the per-call methods.
func TestPreparedHandles(t *testing.T) {
	m, err := New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	inc := m.RedirectCounter("http", OK)
	inc()
	inc()
	m.Redirect("http", OK)
	if got := testutil.ToFloat64(m.redirects.WithLabelValues("http", OK)); got != 3 {
		t.Fatalf("redirects_total{http,ok} = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.redirects.WithLabelValues("rtsp", OK)); got != 0 {
		t.Fatalf("redirects_total{rtsp,ok} = %v, want 0", got)
	}
	obs := m.ResolveObserver("http")
	obs(time.Microsecond)
	m.ResolveDuration("http", time.Microsecond)
	if n := testutil.CollectAndCount(m.resolve); n != 1 {
		t.Fatalf("%d resolve series, want 1", n)
	}

	var none *Prom // a nil *Prom hands out handles that do nothing
	none.RedirectCounter("http", OK)()
	none.ResolveObserver("http")(time.Second)
}
