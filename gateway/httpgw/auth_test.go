package httpgw

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/authtest"
	"github.com/peergate/peergate/shared/pubauth"
)

const playSecret = authtest.PlaySecret

// TestPlayAuthorization: with AuthorizePlay, a missing, wrong, expired, other-NAME or
// other-client token gets 403 before the resolver is asked; the right token gets the 302
// and the Location carries the token on to the origin. Behind a trusted proxy the
// forwarded client is the one a bound token names.
func TestPlayAuthorization(t *testing.T) {
	res := newFake()
	m := &recMetricsAuth{}
	s := start(t, &Server{Resolver: res, Metrics: m, AuthorizePlay: pubauth.PlayAuthorizer(playSecret),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	future := time.Now().Add(time.Hour).Unix()
	get := func(query string) (int, string) {
		r := raw(t, s.Addr(), "GET", "GET /live/cam1/index.m3u8"+query+" HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
		return r.StatusCode, r.Header.Get("Location")
	}
	refused := append(authtest.BadTokens("live/cam1", true), authtest.Case{Desc: "other param", Query: "a=b"})
	for _, c := range refused {
		if code, loc := get("?" + c.Query); code != 403 || loc != "" {
			t.Errorf("%s: %d %q, want 403 without Location", c.Desc, code, loc)
		}
	}
	res.mu.Lock()
	asked := len(res.reqs)
	res.mu.Unlock()
	if asked != 0 {
		t.Errorf("refused players reached the resolver %d times", asked)
	}
	if got := m.count(OutcomeUnauthorized); got != len(refused) {
		t.Errorf("unauthorized outcomes = %d, want %d", got, len(refused))
	}

	for _, q := range []string{
		pubauth.TokenQuery(playSecret, "live/cam1", future, ""),
		pubauth.TokenQuery(playSecret, "live/cam1", future, "127.0.0.1"),
		"x=1&" + pubauth.TokenQuery(playSecret, "live/cam1", future, "") + "&y=2",
	} {
		code, loc := get("?" + q)
		u, err := url.Parse(loc)
		if code != 302 || err != nil || u.Host != "o1.test:8081" || u.RawQuery != q {
			t.Errorf("right token %q: %d %q, want 302 carrying the query", q, code, loc)
		}
	}

	// Behind a trusted proxy (127.0.0.2) the client is X-Forwarded-For's.
	bound := pubauth.TokenQuery(playSecret, "live/cam1", future, "192.0.2.7")
	for _, c := range []struct {
		xff  string
		want int
	}{{"192.0.2.7", 302}, {"192.0.2.8", 403}} {
		req := "GET /live/cam1/index.m3u8?" + bound + " HTTP/1.1\r\nHost: gw\r\nX-Forwarded-For: " + c.xff + "\r\nConnection: close\r\n\r\n"
		if r := rawFrom(t, "127.0.0.2", s.Addr().String(), req); r.StatusCode != c.want {
			t.Errorf("bound token via proxy for %s: %d, want %d", c.xff, r.StatusCode, c.want)
		}
	}
}

// recMetricsAuth counts outcomes.
type recMetricsAuth struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *recMetricsAuth) Redirect(_, outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = map[string]int{}
	}
	m.n[outcome]++
}

func (m *recMetricsAuth) ResolveDuration(string, time.Duration) {}

func (m *recMetricsAuth) count(outcome string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[outcome]
}

// rawFrom sends one request from the local address from (a loopback address) and reads the answer.
func rawFrom(t *testing.T, from, addr, request string) *http.Response {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
