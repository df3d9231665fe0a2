package httpgw

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peergate/peergate/gateway/gwmetrics"
	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/pubauth"
)

// staticResolver always picks one origin: it measures the listener, not the choice.
type staticResolver struct{}

func (staticResolver) Resolve(resolve.Request) resolve.Result {
	return resolve.Result{Outcome: resolve.OK, OriginID: "o1", BaseURL: "http://o1.test:8081", Scheme: "http"}
}

// table returns a real resolver with two origins that both run live/cam1.
func table() *resolve.Table {
	t := resolve.New(resolve.Options{})
	for i, id := range []string{"o1", "o2"} {
		t.PutOrigin(cluster.Origin{
			ID: id, State: cluster.StateUp, StartedAt: time.Now(), TTLMillis: 3000,
			Public: cluster.Public{"http": "http://" + id + ".test:808" + string(rune('1'+i))},
		})
		t.PutStreams(id, []cluster.Stream{{Name: "live/cam1", State: cluster.StreamRunning}})
	}
	return t
}

func TestWithTable(t *testing.T) {
	s := start(t, &Server{Resolver: table()})
	first := ""
	for range 5 {
		res := raw(t, s.Addr(), "GET", "GET /live/cam1/index.m3u8?token=t HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
		loc := res.Header.Get("Location")
		u, err := url.Parse(loc)
		if res.StatusCode != 302 || err != nil || (u.Host != "o1.test:8081" && u.Host != "o2.test:8082") || u.RequestURI() != "/live/cam1/index.m3u8?token=t" {
			t.Fatalf("%d %q", res.StatusCode, loc)
		}
		if first == "" {
			first = loc
		} else if loc != first {
			t.Fatalf("same viewer moved from %q to %q", first, loc)
		}
	}
	if res := raw(t, s.Addr(), "GET", "GET /live/other/index.m3u8 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"); res.StatusCode != 404 {
		t.Fatalf("unknown name: %d", res.StatusCode)
	}
}

func BenchmarkRedirect(b *testing.B) {
	req := httptest.NewRequest(http.MethodGet, "/live/cam1/index.m3u8?token=abc123", nil)
	prom, err := gwmetrics.New(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	logged := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := func(res Resolver, m Metrics, l *slog.Logger) http.Handler {
		if m == nil {
			m = nopMetrics{}
		}
		return (&handler{res: res, log: l, metrics: m, retryAfter: []string{"2"}}).router()
	}
	// A play token check on the same path: one HMAC per redirect.
	tokReq := httptest.NewRequest(http.MethodGet, "/live/cam1/index.m3u8?"+
		pubauth.TokenQuery("bench-play-secret-0123", "live/cam1", time.Now().Add(time.Hour).Unix(), ""), nil)
	withToken := &handler{res: staticResolver{}, log: quiet, metrics: nopMetrics{}, retryAfter: []string{"2"},
		authorize: pubauth.PlayAuthorizer("bench-play-secret-0123")}
	for _, bc := range []struct {
		name string
		h    http.Handler
		req  *http.Request
	}{
		// The floor: a bare handler that writes the same kind of answer.
		{"baseline", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "http://o1.test:8081"+r.URL.RequestURI())
			w.WriteHeader(http.StatusFound)
		}), nil},
		{"gateway", h(staticResolver{}, nil, quiet), nil},
		{"gateway+prometheus", h(staticResolver{}, prom, quiet), nil},
		{"gateway+prometheus+log", h(staticResolver{}, prom, logged), nil},
		{"gateway+table", h(table(), nil, quiet), nil},
		{"gateway+token", withToken.router(), tokReq},
	} {
		r := req
		if bc.req != nil {
			r = bc.req
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				bc.h.ServeHTTP(w, r)
				if w.Code != http.StatusFound {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
