package admin

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func start(t *testing.T, s *Server) string {
	t.Helper()
	s.Address = "127.0.0.1:0"
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return "http://" + s.Addr().String()
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b), res.Header
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "peergate_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	var ready atomic.Bool
	base := start(t, &Server{
		Gatherer: reg,
		Ready: func() error {
			if !ready.Load() {
				return errors.New("no registry snapshot yet")
			}
			return nil
		},
		Handlers: map[string]http.Handler{
			"GET /api/v1/thing": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				WriteJSON(w, http.StatusOK, map[string]string{"q": r.URL.Query().Get("q")})
			}),
		},
	})

	cases := []struct {
		desc, path string
		status     int
		body       string
	}{
		{"healthz", "/healthz", 200, "ok\n"},
		{"readyz before", "/readyz", 503, "not ready: no registry snapshot yet\n"},
		{"metrics", "/metrics", 200, "peergate_test_total 3"},
		{"extra", "/api/v1/thing?q=x", 200, `"q": "x"`},
		{"unknown", "/nope", 404, ""},
	}
	for _, ca := range cases {
		status, body, _ := get(t, base+ca.path)
		if status != ca.status || !strings.Contains(body, ca.body) {
			t.Errorf("%s: %d %q, want %d containing %q", ca.desc, status, body, ca.status, ca.body)
		}
	}
	ready.Store(true)
	if status, body, _ := get(t, base+"/readyz"); status != 200 || body != "ready\n" {
		t.Fatalf("readyz after: %d %q", status, body)
	}
	res, err := http.Post(base+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz: %d", res.StatusCode)
	}
}

func TestNilReadyIsReady(t *testing.T) {
	t.Parallel()
	base := start(t, &Server{})
	if status, _, _ := get(t, base+"/readyz"); status != 200 {
		t.Fatalf("readyz: %d", status)
	}
	if status, _, _ := get(t, base+"/metrics"); status != 200 {
		t.Fatalf("metrics: %d", status)
	}
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	base := start(t, &Server{Handlers: map[string]http.Handler{
		"GET /bad": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			WriteError(w, http.StatusBadRequest, "name: required")
		}),
	}})
	status, body, h := get(t, base+"/bad")
	if status != 400 || !strings.Contains(body, `"error": "name: required"`) || h.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q %v", status, body, h)
	}
}

// An oversized header is refused instead of buffered.
func TestHeaderLimit(t *testing.T) {
	t.Parallel()
	base := start(t, &Server{})
	req, err := http.NewRequest("GET", base+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", res.StatusCode)
	}
}

// Connections beyond MaxConns wait in the kernel backlog instead of being served.
func TestConnLimit(t *testing.T) {
	t.Parallel()
	s := &Server{MaxConns: 1}
	base := start(t, s)
	hold, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	// Make sure the held connection has been accepted before the second one tries.
	if _, err := hold.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := http.ReadResponse(bufio.NewReader(hold), nil); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 300 * time.Millisecond}
	if _, err := c.Get(base + "/healthz"); err == nil {
		t.Fatal("second connection was served while the limit was held")
	}
	hold.Close()
	c.Timeout = 5 * time.Second
	res, err := c.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	res.Body.Close()
}

// A client that never finishes its header is cut off by the read-header deadline, and Close returns.
func TestCloseWithIdleConn(t *testing.T) {
	t.Parallel()
	s := &Server{}
	start(t, s)
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownTimeout + 2*time.Second):
		t.Fatal("Close did not return")
	}
}
