package httpgw

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/gateway/resolve"
)

// fakeStream is one entry of the fake registry.
type fakeStream struct {
	outcome     resolve.Outcome
	id          string
	http, https string
}

// fakeResolver answers from a fixed table and records what it was asked.
type fakeResolver struct {
	streams map[string]fakeStream

	mu   sync.Mutex
	reqs []resolve.Request
}

// registryHosts are the only hosts a Location may ever name.
var registryHosts = map[string]bool{"o1.test:8081": true, "o1.test:8443": true, "o2.test:8082": true}

func newFake() *fakeResolver {
	o1 := fakeStream{resolve.OK, "o1", "http://o1.test:8081", "https://o1.test:8443"}
	return &fakeResolver{streams: map[string]fakeStream{
		"cam1":            o1,
		"live/cam1":       o1,
		"a/b/c/d/e/f/g/h": {resolve.OK, "o2", "http://o2.test:8082", ""},
		// Names a sloppy parser might derive from hostile paths.
		"evil.com":   o1,
		"evil.com/x": o1,
		"x":          o1,
		"down":       {outcome: resolve.Unavailable},
		"badbase":    {resolve.OK, "o9", "http://o9.test:8081/x?", ""},
		"broken":     {},
	}}
}

func (f *fakeResolver) Resolve(req resolve.Request) resolve.Result {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	s, ok := f.streams[req.Name]
	if !ok {
		return resolve.Result{Outcome: resolve.NotFound}
	}
	if s.outcome != resolve.OK {
		return resolve.Result{Outcome: s.outcome}
	}
	if req.Secure && s.https != "" {
		return resolve.Result{Outcome: resolve.OK, OriginID: s.id, BaseURL: s.https, Scheme: "https"}
	}
	return resolve.Result{Outcome: resolve.OK, OriginID: s.id, BaseURL: s.http, Scheme: "http", Route: resolve.RouteOwner}
}

func (f *fakeResolver) last(t *testing.T) resolve.Request {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("resolver was not asked")
	}
	return f.reqs[len(f.reqs)-1]
}

// start initializes s on a loopback port with test defaults and closes it at cleanup.
func start(t *testing.T, s *Server) *Server {
	t.Helper()
	if s.Address == "" {
		s.Address = "127.0.0.1:0"
	}
	if s.Resolver == nil {
		s.Resolver = newFake()
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// noFollow is a client that shows redirects instead of following them.
func noFollow(tlsConf *tls.Config) *http.Client {
	return &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{TLSClientConfig: tlsConf, DisableKeepAlives: true},
	}
}

// raw sends one hand-written request over TCP and reads the answer, so tests can send
// what http.Client refuses to.
func raw(t *testing.T, addr net.Addr, method, request string) *http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer to %.80q: %v", request, err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(body))
	return res
}

// checkLocation fails unless a Location, if any, names a host of the fake registry.
func checkLocation(t *testing.T, res *http.Response) {
	t.Helper()
	loc := res.Header.Values("Location")
	if len(loc) == 0 {
		return
	}
	if len(loc) > 1 {
		t.Fatalf("%d Location headers: %q", len(loc), loc)
	}
	u, err := url.Parse(loc[0])
	if err != nil || !registryHosts[u.Host] || u.User != nil {
		t.Fatalf("Location %q leaves the registry", loc[0])
	}
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
