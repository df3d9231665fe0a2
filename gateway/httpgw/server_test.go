package httpgw

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peergate/peergate/gateway/gwmetrics"
	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/internal/logtest"
	"github.com/peergate/peergate/internal/netcap"
	"github.com/peergate/peergate/internal/testcert"
)

// Every URL form of design.md section 2, with and without a query.
var casesRedirect = []struct {
	path, query string
	location    string // "" means no redirect
	status      int
}{
	{"/cam1/index.m3u8", "", "http://o1.test:8081/cam1/index.m3u8", 302},
	{"/live/cam1/index.m3u8", "", "http://o1.test:8081/live/cam1/index.m3u8", 302},
	{"/live/cam1/index.m3u8", "token=abc%2Fdef%3D&exp=1700000000", "http://o1.test:8081/live/cam1/index.m3u8?token=abc%2Fdef%3D&exp=1700000000", 302},
	{"/live/cam1/main_stream.m3u8", "token=t", "http://o1.test:8081/live/cam1/main_stream.m3u8?token=t", 302},
	{"/live/cam1/main_video_seg7.ts", "", "http://o1.test:8081/live/cam1/main_video_seg7.ts", 302},
	{"/live/cam1/seg7.m4s", "", "http://o1.test:8081/live/cam1/seg7.m4s", 302},
	{"/live/cam1/main_video_init.mp4", "", "http://o1.test:8081/live/cam1/main_video_init.mp4", 302},
	{"/live/cam1/audio.aac", "", "http://o1.test:8081/live/cam1/audio.aac", 302},
	{"/live/cam1/mpegts", "token=t", "http://o1.test:8081/live/cam1/mpegts?token=t", 302},
	{"/live/cam1/embed.html", "", "http://o1.test:8081/live/cam1/embed.html", 302},
	{"/live/cam1/index.mpd", "a=1&a=2", "http://o1.test:8081/live/cam1/index.mpd?a=1&a=2", 302},
	{"/a/b/c/d/e/f/g/h/index.m3u8", "", "http://o2.test:8082/a/b/c/d/e/f/g/h/index.m3u8", 302},
	{"/nosuch/index.m3u8", "", "", 404},
	{"/live/nosuch/mpegts", "token=t", "", 404},
	{"/down/index.m3u8", "", "", 503},
	{"/badbase/index.m3u8", "", "", 502},
	{"/broken/index.m3u8", "", "", 500},
	{"/cam1/favicon.ico", "", "", 404},
	{"/", "", "", 404},
}

func TestRedirect(t *testing.T) {
	s := start(t, &Server{})
	c := noFollow(nil)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		for _, ca := range casesRedirect {
			u := "http://" + s.Addr().String() + ca.path
			if ca.query != "" {
				u += "?" + ca.query
			}
			req, _ := http.NewRequest(method, u, nil)
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != ca.status || res.Header.Get("Location") != ca.location {
				t.Errorf("%s %s: %d %q, want %d %q", method, u, res.StatusCode, res.Header.Get("Location"), ca.status, ca.location)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("%s %s: Cache-Control %q", method, u, got)
			}
			if got := res.Header.Get("Access-Control-Allow-Origin"); got != "*" {
				t.Errorf("%s %s: Access-Control-Allow-Origin %q", method, u, got)
			}
			if ca.status == 503 && res.Header.Get("Retry-After") != "2" {
				t.Errorf("%s %s: Retry-After %q, want 2", method, u, res.Header.Get("Retry-After"))
			}
			if ca.status != 503 && res.Header.Get("Retry-After") != "" {
				t.Errorf("%s %s: unexpected Retry-After", method, u)
			}
			if method == http.MethodHead && len(body) != 0 {
				t.Errorf("HEAD %s: body %q", u, body)
			}
			if method == http.MethodGet && ca.status >= 400 && len(body) == 0 {
				t.Errorf("GET %s: no text for humans", u)
			}
		}
	}
}

func TestRetryAfterSetting(t *testing.T) {
	for _, ca := range []struct {
		set  time.Duration
		want string
	}{{0, "2"}, {1500 * time.Millisecond, "2"}, {time.Millisecond, "1"}, {30 * time.Second, "30"}} {
		s := start(t, &Server{RetryAfter: ca.set})
		res := raw(t, s.Addr(), "GET", "GET /down/index.m3u8 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
		if res.StatusCode != 503 || res.Header.Get("Retry-After") != ca.want {
			t.Errorf("RetryAfter %v: %d Retry-After %q, want 503 %q", ca.set, res.StatusCode, res.Header.Get("Retry-After"), ca.want)
		}
	}
}

func TestMethods(t *testing.T) {
	s := start(t, &Server{})
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "PROPFIND", "FOO"} {
		target := "/cam1/index.m3u8"
		if m == "CONNECT" {
			target = "o1.test:443"
		}
		res := raw(t, s.Addr(), m, m+" "+target+" HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		if m == "CONNECT" {
			// net/http routes CONNECT by authority; what matters is that it is no redirect.
			if res.StatusCode/100 == 3 || res.StatusCode == 200 {
				t.Errorf("CONNECT: %d", res.StatusCode)
			}
			continue
		}
		if res.StatusCode != 405 || res.Header.Get("Allow") != "GET, HEAD, OPTIONS" || res.Header.Get("Location") != "" {
			t.Errorf("%s: %d Allow %q Location %q", m, res.StatusCode, res.Header.Get("Allow"), res.Header.Get("Location"))
		}
	}
}

func TestPreflight(t *testing.T) {
	s := start(t, &Server{})
	// net/http answers "OPTIONS *" itself (200, empty): no redirect either.
	if res := raw(t, s.Addr(), "OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"); res.StatusCode != 200 || res.Header.Get("Location") != "" {
		t.Errorf("OPTIONS *: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	for _, p := range []string{"/cam1/index.m3u8", "/nosuch/index.m3u8", "//evil.com/x"} {
		res := raw(t, s.Addr(), "OPTIONS", "OPTIONS "+p+" HTTP/1.1\r\nHost: gw\r\nOrigin: https://player.example\r\n"+
			"Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: range\r\nConnection: close\r\n\r\n")
		if res.StatusCode != 204 || res.Header.Get("Location") != "" {
			t.Errorf("OPTIONS %s: %d Location %q", p, res.StatusCode, res.Header.Get("Location"))
		}
		for k, want := range map[string]string{
			"Access-Control-Allow-Origin":  "*",
			"Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
			"Access-Control-Allow-Headers": "*",
			"Access-Control-Max-Age":       "86400",
			"Allow":                        "GET, HEAD, OPTIONS",
		} {
			if got := res.Header.Get(k); got != want {
				t.Errorf("OPTIONS %s: %s %q, want %q", p, k, got, want)
			}
		}
	}
}

// Hostile request targets, sent byte for byte over TCP.
var casesHostile = []struct {
	desc    string
	request string
	status  int // 0: any 4xx
}{
	{"protocol-relative", "GET //evil.com/x/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 404},
	{"protocol-relative name", "GET //evil.com/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 404},
	{"escaped backslash", "GET /%5Cevil.com/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 404},
	{"escaped backslash lower", "GET /%5cevil.com/x/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 404},
	{"backslash", "GET /\\evil.com/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 0},
	{"escaped slashes", "GET /%2F%2Fevil.com/x/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 404},
	{"escaped slash in name", "GET /evil.com%2Fx/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 404},
	{"escaped CRLF", "GET /cam1/index.m3u8%0d%0aLocation:%20http://evil.com/ HTTP/1.1\r\nHost: gw\r\n", 404},
	{"escaped CRLF in name", "GET /cam1%0D%0ASet-Cookie:x/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 404},
	{"CRLF in target", "GET /cam1\r\nLocation: http://evil.com/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 0},
	{"bare CR in target", "GET /cam1\rx/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 0},
	{"dot dot", "GET /../x/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 404},
	{"dot dot inside", "GET /cam1/../x/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 404},
	{"escaped dot dot", "GET /%2e%2e/x/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 404},
	{"dot", "GET /a/./index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 404},
	{"10 kB name", "GET /" + strings.Repeat("a", 10<<10) + "/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 404},
	{"user info", "GET /evil.com@o1.test/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 404},
	{"at sign", "GET /@evil.com/index.m3u8 HTTP/1.1\r\nHost: gw\r\n", 404},
	{"fragment in query", "GET /cam1/index.m3u8?t=1#@evil.com HTTP/1.1\r\nHost: gw\r\n", 400},
	{"raw UTF-8 in query", "GET /cam1/index.m3u8?t=k\xc3\xa4se HTTP/1.1\r\nHost: gw\r\n", 0},
	{"NUL in target", "GET /cam1/index.m3u8\x00 HTTP/1.1\r\nHost: gw\r\n", 0},
	{"tab in target", "GET /cam1/\tindex.m3u8 HTTP/1.1\r\nHost: gw\r\n", 0},
}

func TestHostilePaths(t *testing.T) {
	s := start(t, &Server{})
	for _, ca := range casesHostile {
		method, _, _ := strings.Cut(ca.request, " ")
		res := raw(t, s.Addr(), method, ca.request+"Connection: close\r\n\r\n")
		checkLocation(t, res)
		t.Logf("%s: %d", ca.desc, res.StatusCode)
		if res.StatusCode/100 == 3 || res.Header.Get("Location") != "" || res.Header.Get("Set-Cookie") != "" {
			t.Errorf("%s: %d Location %q", ca.desc, res.StatusCode, res.Header.Get("Location"))
		}
		if ca.status != 0 && res.StatusCode != ca.status || res.StatusCode/100 != 4 {
			t.Errorf("%s: status %d, want %d", ca.desc, res.StatusCode, ca.status)
		}
	}
}

// A path that is fine but arrives in a form that only looks hostile still goes to the registry.
func TestHostileButHarmless(t *testing.T) {
	s := start(t, &Server{})
	for _, req := range []string{
		"GET http://evil.com/cam1/index.m3u8 HTTP/1.1\r\nHost: evil.com\r\n", // absolute form
		"GET /cam1/index.m3u8 HTTP/1.1\r\nHost: evil.com\r\n",
		"GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\nX-Forwarded-Host: evil.com\r\nX-Forwarded-Proto: https\r\n",
		"GET /x/index.m3u8?next=//evil.com HTTP/1.1\r\nHost: gw\r\n",
	} {
		res := raw(t, s.Addr(), "GET", req+"Connection: close\r\n\r\n")
		checkLocation(t, res)
		if res.StatusCode != 302 || !strings.HasPrefix(res.Header.Get("Location"), "http://o1.test:8081/") {
			t.Errorf("%.50q: %d %q", req, res.StatusCode, res.Header.Get("Location"))
		}
	}
}

func TestOversizeHeaders(t *testing.T) {
	s := start(t, &Server{})
	res := raw(t, s.Addr(), "GET", "GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\nX-Big: "+strings.Repeat("b", 32<<10)+"\r\nConnection: close\r\n\r\n")
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", res.StatusCode)
	}
	// Just under the default limit still works.
	res = raw(t, s.Addr(), "GET", "GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\nX-Big: "+strings.Repeat("b", 12<<10)+"\r\nConnection: close\r\n\r\n")
	if res.StatusCode != 302 {
		t.Fatalf("status %d, want 302", res.StatusCode)
	}
}

func TestSchemeTLS(t *testing.T) {
	tc := testcert.New(t)
	cert, pool := tc.TLS, tc.Pool
	f := newFake()
	s := start(t, &Server{Resolver: f, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
	c := noFollow(&tls.Config{RootCAs: pool})
	res, err := c.Get("https://" + s.Addr().String() + "/live/cam1/index.m3u8?token=t")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 302 || res.Header.Get("Location") != "https://o1.test:8443/live/cam1/index.m3u8?token=t" {
		t.Fatalf("%d %q", res.StatusCode, res.Header.Get("Location"))
	}
	if !f.last(t).Secure {
		t.Fatal("resolver was not asked for a secure origin")
	}
	// An origin without https: the resolver decides, the gateway keeps the registry's URL.
	res, err = c.Get("https://" + s.Addr().String() + "/a/b/c/d/e/f/g/h/index.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 302 || res.Header.Get("Location") != "http://o2.test:8082/a/b/c/d/e/f/g/h/index.m3u8" {
		t.Fatalf("%d %q", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestForwardedProto(t *testing.T) {
	trusted := start(t, &Server{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	untrusted := start(t, &Server{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	none := start(t, &Server{})
	for _, ca := range []struct {
		s    *Server
		xfp  string
		want string
	}{
		{trusted, "https", "https://o1.test:8443/cam1/index.m3u8"},
		{trusted, "HTTPS", "https://o1.test:8443/cam1/index.m3u8"},
		{trusted, "https, http", "https://o1.test:8443/cam1/index.m3u8"},
		{trusted, "http", "http://o1.test:8081/cam1/index.m3u8"},
		{trusted, "", "http://o1.test:8081/cam1/index.m3u8"},
		{untrusted, "https", "http://o1.test:8081/cam1/index.m3u8"},
		{none, "https", "http://o1.test:8081/cam1/index.m3u8"},
	} {
		hdr := ""
		if ca.xfp != "" {
			hdr = "X-Forwarded-Proto: " + ca.xfp + "\r\n"
		}
		res := raw(t, ca.s.Addr(), "GET", "GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\n"+hdr+"Connection: close\r\n\r\n")
		if res.StatusCode != 302 || res.Header.Get("Location") != ca.want {
			t.Errorf("trusted=%v XFP %q: %d %q, want %q", ca.s.TrustedProxies, ca.xfp, res.StatusCode, res.Header.Get("Location"), ca.want)
		}
	}
}

func TestForwardedForOverTCP(t *testing.T) {
	fTrusted, fUntrusted := newFake(), newFake()
	trusted := start(t, &Server{Resolver: fTrusted, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	untrusted := start(t, &Server{Resolver: fUntrusted})
	req := "GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\nX-Forwarded-For: 203.0.113.7, 127.0.0.1\r\nConnection: close\r\n\r\n"
	raw(t, trusted.Addr(), "GET", req)
	if got := fTrusted.last(t).Client; got != "203.0.113.7" {
		t.Errorf("trusted proxy: client %q, want 203.0.113.7", got)
	}
	raw(t, untrusted.Addr(), "GET", req)
	if got := fUntrusted.last(t).Client; got != "127.0.0.1" {
		t.Errorf("untrusted peer: client %q, want 127.0.0.1", got)
	}
}

func TestPeer(t *testing.T) {
	p := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	for _, ca := range []struct {
		desc    string
		trusted []netip.Prefix
		remote  string
		xff     []string
		want    string
	}{
		{"no proxies", nil, "198.51.100.1:1234", []string{"203.0.113.7"}, "198.51.100.1"},
		{"untrusted peer", p("10.0.0.0/8"), "198.51.100.1:1234", []string{"203.0.113.7"}, "198.51.100.1"},
		{"trusted peer", p("10.0.0.0/8"), "10.0.0.1:1234", []string{"203.0.113.7"}, "203.0.113.7"},
		{"trusted peer no XFF", p("10.0.0.0/8"), "10.0.0.1:1234", nil, "10.0.0.1"},
		{"spoofed left entry", p("10.0.0.0/8"), "10.0.0.1:1234", []string{"6.6.6.6, 203.0.113.7"}, "203.0.113.7"},
		{"chain of proxies", p("10.0.0.0/8"), "10.0.0.1:1234", []string{"6.6.6.6, 203.0.113.7, 10.0.0.3, 10.0.0.2"}, "203.0.113.7"},
		{"merged headers", p("10.0.0.0/8"), "10.0.0.1:1234", []string{"6.6.6.6", "203.0.113.7, 10.0.0.2"}, "203.0.113.7"},
		{"all trusted", p("10.0.0.0/8"), "10.0.0.1:1234", []string{"10.0.0.9, 10.0.0.2"}, "10.0.0.9"},
		{"garbage after trusted", p("10.0.0.0/8"), "10.0.0.1:1234", []string{"203.0.113.7, bogus, 10.0.0.2"}, "10.0.0.2"},
		{"garbage only", p("10.0.0.0/8"), "10.0.0.1:1234", []string{"bogus"}, "10.0.0.1"},
		{"empty entries", p("10.0.0.0/8"), "10.0.0.1:1234", []string{" , 203.0.113.7 ,, "}, "203.0.113.7"},
		{"entry with port", p("10.0.0.0/8"), "10.0.0.1:1234", []string{"203.0.113.7:5555"}, "203.0.113.7"},
		// A short v4 address plus port fits in 15 bytes: the port must still go, or the key changes per connection.
		{"short entry with port", p("10.0.0.0/8"), "10.0.0.1:1234", []string{"1.2.3.4:80"}, "1.2.3.4"},
		{"short entry with port behind a proxy", p("10.0.0.0/8"), "10.0.0.1:1234", []string{"192.0.2.1:80, 10.0.0.2"}, "192.0.2.1"},
		{"v4-mapped alias of trusted", p("10.0.0.0/8"), "10.0.0.1:1234", []string{"203.0.113.7, ::ffff:10.0.0.2"}, "203.0.113.7"},
		{"zoned alias of trusted", p("fe80::/10"), "[fe80::1%eth0]:1234", []string{"2001:db8::7, fe80::2%eth0"}, "2001:db8::7"},
		{"ipv6 client", p("10.0.0.0/8"), "10.0.0.1:1234", []string{"2001:DB8::7"}, "2001:db8::7"},
		{"v4-mapped peer", nil, "[::ffff:198.51.100.1]:1234", nil, "198.51.100.1"},
		{"ipv6 peer", nil, "[2001:db8::1]:1234", nil, "2001:db8::1"},
		{"v4-mapped trusted peer", p("10.0.0.0/8"), "[::ffff:10.0.0.1]:1234", []string{"203.0.113.7"}, "203.0.113.7"},
	} {
		h := &handler{trusted: ca.trusted}
		r := httptest.NewRequest("GET", "/cam1/index.m3u8", nil)
		r.RemoteAddr = ca.remote
		if ca.xff != nil {
			r.Header["X-Forwarded-For"] = ca.xff
		}
		if got, _ := h.peer(r); got != ca.want {
			t.Errorf("%s: client %q, want %q", ca.desc, got, ca.want)
		}
	}
}

func TestStickyParam(t *testing.T) {
	f := newFake()
	s := start(t, &Server{Resolver: f, StickyParam: "token"})
	for _, ca := range []struct{ query, want string }{
		{"token=abc123", "abc123"},
		{"exp=1&token=a%2Fb", "a%2Fb"},
		{"token=&x=1", "127.0.0.1"},
		{"tokens=abc", "127.0.0.1"},
		{"", "127.0.0.1"},
	} {
		target := "/cam1/index.m3u8"
		if ca.query != "" {
			target += "?" + ca.query
		}
		res := raw(t, s.Addr(), "GET", "GET "+target+" HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
		if res.StatusCode != 302 || res.Header.Get("Location") != "http://o1.test:8081"+target {
			t.Errorf("%q: %d %q", ca.query, res.StatusCode, res.Header.Get("Location"))
		}
		if got := f.last(t).Client; got != ca.want {
			t.Errorf("%q: client key %q, want %q", ca.query, got, ca.want)
		}
	}
	if err := (&Server{Resolver: f, StickyParam: "a=b"}).Initialize(); err == nil {
		t.Error("StickyParam with '=' accepted")
	}
}

// TestConnectionLimit: over MaxConns a connection is closed at once (not queued behind the
// held ones), counted as refused and logged; a freed slot is reused.
func TestConnectionLimit(t *testing.T) {
	m := &countingMetrics{}
	var logs logtest.Buffer
	s := start(t, &Server{MaxConns: 2, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 10 * time.Second,
		Metrics: m, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// Both held connections are being served: they answer.
	for _, c := range held {
		get(t, c, http.StatusFound)
	}
	third, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	closedAtOnce(t, third)
	if n := m.count(gwmetrics.Refused); n != 1 {
		t.Fatalf("refused counted %d times, want 1", n)
	}
	if !strings.Contains(strings.Join(logs.Lines(), "\n"), "http connections refused") {
		t.Fatalf("refusal not logged: %q", logs.Lines())
	}
	held[0].Close()
	waitFor(t, "a freed slot is reused", func() bool {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, "GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"); err != nil {
			return false
		}
		res, err := http.ReadResponse(newReader(c), nil)
		return err == nil && res.StatusCode == http.StatusFound
	})
}

// TestConnectionLimitPerIP: one address holding MaxConnsPerIP connections gets its next one
// closed at once (counted refused_per_ip), while another address is served.
func TestConnectionLimitPerIP(t *testing.T) {
	m := &countingMetrics{}
	s := start(t, &Server{MaxConnsPerIP: 2, ReadHeaderTimeout: 10 * time.Second, Metrics: m})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	for range 2 {
		c, err := d.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, "two connections from 127.0.0.2 accepted", func() bool {
		return s.ln.(*netcap.Listener).ActiveFrom("127.0.0.2") == 2
	})
	over, err := d.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	closedAtOnce(t, over)
	if n := m.count(gwmetrics.RefusedPerIP); n != 1 {
		t.Fatalf("refused_per_ip counted %d times, want 1", n)
	}
	other, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	get(t, other, http.StatusFound)
}

// get sends one keep-alive GET on c and checks the status.
func get(t *testing.T, c net.Conn, want int) {
	t.Helper()
	if _, err := io.WriteString(c, "GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(newReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != want {
		t.Fatalf("status %d, want %d", res.StatusCode, want)
	}
}

// closedAtOnce checks that the listener closed c without an answer, well before any timeout.
func closedAtOnce(t *testing.T, c net.Conn) {
	t.Helper()
	_, _ = io.WriteString(c, "GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n > 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection over the cap not closed at once: n=%d err=%v", n, err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countingMetrics counts Redirect outcomes.
type countingMetrics struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *countingMetrics) Redirect(_, outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = map[string]int{}
	}
	m.n[outcome]++
}

func (m *countingMetrics) ResolveDuration(string, time.Duration) {}

func (m *countingMetrics) count(outcome string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[outcome]
}

func TestSlowloris(t *testing.T) {
	s := start(t, &Server{ReadHeaderTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	began := time.Now()
	if _, err := io.WriteString(c, "GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\n"); err != nil {
		t.Fatal(err)
	}
	// Trickle one header byte every 50 ms; the deadline is on the whole header, not per read.
	done := make(chan struct{})
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for range 100 {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if _, err := c.Write([]byte("X")); err != nil {
				return
			}
		}
	}()
	defer func() { close(done); <-trickled }()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept a slowloris connection open for 3 s")
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("cut off after %v, ReadHeaderTimeout is 200ms", took)
	}
	if strings.Contains(string(b), "Location") {
		t.Fatalf("slowloris got a redirect: %q", b)
	}
}

func TestLogLine(t *testing.T) {
	var buf logtest.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := start(t, &Server{Logger: logger, StickyParam: "token"})
	res := raw(t, s.Addr(), "GET", "GET /live/cam1/index.m3u8?token=SECRET HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
	if res.StatusCode != 302 {
		t.Fatalf("status %d", res.StatusCode)
	}
	var reqLines []map[string]any
	for _, l := range buf.Lines() {
		if strings.Contains(l, "SECRET") {
			t.Errorf("log line carries the sticky token: %s", l)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if m["msg"] == "http request" {
			reqLines = append(reqLines, m)
		}
	}
	if len(reqLines) != 1 {
		t.Fatalf("%d request lines, want 1: %v", len(reqLines), buf.Lines())
	}
	m := reqLines[0]
	for k, want := range map[string]any{"level": "INFO", "method": "GET", "path": "/live/cam1/index.m3u8", "client": "127.0.0.1",
		"sticky": true, "outcome": "ok", "origin": "o1", "route": "owner", "status": float64(302)} {
		if m[k] != want {
			t.Errorf("log %s = %v, want %v", k, m[k], want)
		}
	}
	if _, ok := m["duration"]; !ok {
		t.Error("log line has no duration")
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := gwmetrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gwmetrics.New(reg); err == nil {
		t.Fatal("registering twice on one registry succeeded")
	}
	s := start(t, &Server{Metrics: m})
	for _, p := range []string{"/cam1/index.m3u8", "/cam1/index.m3u8", "/nosuch/index.m3u8", "/down/mpegts", "//evil.com/index.m3u8"} {
		raw(t, s.Addr(), "GET", "GET "+p+" HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	var observed uint64
	for _, mf := range mfs {
		for _, mm := range mf.GetMetric() {
			switch mf.GetName() {
			case "peergate_gateway_redirects_total":
				labels := map[string]string{}
				for _, l := range mm.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["proto"] != "http" {
					t.Errorf("proto label %q", labels["proto"])
				}
				counts[labels["outcome"]] = mm.GetCounter().GetValue()
			case "peergate_gateway_resolve_seconds":
				observed += mm.GetHistogram().GetSampleCount()
			}
		}
	}
	want := map[string]float64{"ok": 2, "not_found": 1, "unavailable": 1, "bad_path": 1}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("redirects_total{outcome=%q} = %v, want %v (all: %v)", k, counts[k], v, counts)
		}
	}
	if observed != 4 {
		t.Errorf("resolve_seconds observed %d times, want 4 (bad paths never reach the resolver)", observed)
	}
}

// A nil pointer in the Metrics interface must not crash the listener.
func TestNilMetricsPointer(t *testing.T) {
	var m *gwmetrics.Prom
	s := start(t, &Server{Metrics: m})
	if res := raw(t, s.Addr(), "GET", "GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"); res.StatusCode != 302 {
		t.Fatalf("status %d", res.StatusCode)
	}
}

func TestInitializeErrors(t *testing.T) {
	var nilTable *resolve.Table
	for _, s := range []*Server{
		{},
		{Resolver: nilTable},
		{Resolver: newFake(), ReadHeaderTimeout: -1},
		{Resolver: newFake(), MaxConns: -1},
		{Resolver: newFake(), TrustedProxies: []netip.Prefix{{}}},
		{Resolver: newFake(), Address: "127.0.0.1:99999"},
	} {
		s.Logger = slog.New(slog.DiscardHandler)
		if err := s.Initialize(); err == nil {
			s.Close()
			t.Errorf("Initialize(%+v) succeeded", s)
		}
	}
}

func TestClose(t *testing.T) {
	s := start(t, &Server{})
	addr := s.Addr().String()
	// An idle keep-alive connection must not hold Close up.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := http.ReadResponse(newReader(c), nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not return")
	}
	s.Close() // twice is fine
	if c2, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c2.Close()
		t.Fatal("still accepting after Close")
	}
	(&Server{}).Close() // before Initialize is fine
}

// TestEvictSilent: a listener full of connections that never sent a byte still serves a new
// client once they have been silent for a second, closing the oldest (counted evicted_silent).
func TestEvictSilent(t *testing.T) {
	m := &countingMetrics{}
	s := start(t, &Server{MaxConns: 2, Metrics: m})
	var silent []net.Conn
	for _, ip := range []byte{2, 3} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, ip)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	waitFor(t, "both silent connections accepted", func() bool { return s.ln.(*netcap.Listener).Active() == 2 })
	time.Sleep(1500 * time.Millisecond)
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	get(t, c, http.StatusFound)
	if n := m.count(gwmetrics.EvictedSilent); n != 1 {
		t.Fatalf("evicted_silent counted %d times, want 1", n)
	}
	_ = silent[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent[0].Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the oldest silent connection was not closed: %v", err)
	}
}
