package httpgw

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/peergate/peergate/gateway/resolve"
)

// dial opens a connection to s with a generous deadline.
func dial(t *testing.T, s *Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readAnswer(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	res, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// expectClosed checks that the server closed c (EOF or reset, not a timeout).
func expectClosed(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := br.Read(make([]byte, 1))
	if n > 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection not closed: n=%d err=%v", n, err)
	}
}

// TestPipelining: requests sent together are answered in order on one connection, HEAD
// without its body, and the connection stays open.
func TestPipelining(t *testing.T) {
	s := start(t, &Server{})
	c, br := dial(t, s)
	reqs := []struct{ method, path string }{
		{"GET", "/cam1/index.m3u8?a=1"}, {"HEAD", "/nosuch/index.m3u8"}, {"GET", "/nosuch/index.m3u8"},
		{"OPTIONS", "/cam1/index.m3u8"}, {"HEAD", "/cam1/index.m3u8"}, {"DELETE", "/cam1/index.m3u8"}, {"GET", "/live/cam1/mpegts"},
	}
	var all strings.Builder
	for _, r := range reqs {
		all.WriteString(r.method + " " + r.path + " HTTP/1.1\r\nHost: gw\r\n\r\n")
	}
	if _, err := io.WriteString(c, all.String()); err != nil {
		t.Fatal(err)
	}
	want := []int{302, 404, 404, 204, 302, 405, 302}
	for i, r := range reqs {
		res, body := readAnswer(t, br, r.method)
		if res.StatusCode != want[i] || res.Close {
			t.Fatalf("%s %s: %d close=%v", r.method, r.path, res.StatusCode, res.Close)
		}
		if r.method == "HEAD" && body != "" || r.method == "GET" && want[i] == 404 && body != "stream not found\n" {
			t.Fatalf("%s %s: body %q", r.method, r.path, body)
		}
		if want[i] == 302 && !strings.HasPrefix(res.Header.Get("Location"), "http://o1.test:8081/") {
			t.Fatalf("%s %s: Location %q", r.method, r.path, res.Header.Get("Location"))
		}
		if res.Header.Get("Date") == "" {
			t.Fatalf("%s %s: no Date", r.method, r.path)
		}
	}
	// Still open: one more.
	get(t, c, http.StatusFound)
}

// TestHTTP10: HTTP/1.0 closes after the answer unless it asks for keep-alive.
func TestHTTP10(t *testing.T) {
	s := start(t, &Server{})
	c, br := dial(t, s)
	io.WriteString(c, "GET /cam1/index.m3u8 HTTP/1.0\r\n\r\n")
	if res, _ := readAnswer(t, br, "GET"); res.StatusCode != 302 || !res.Close {
		t.Fatalf("%d close=%v", res.StatusCode, res.Close)
	}
	expectClosed(t, c, br)

	c, br = dial(t, s)
	for range 2 {
		io.WriteString(c, "GET /cam1/index.m3u8 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		res, _ := readAnswer(t, br, "GET")
		if res.StatusCode != 302 || res.Close || res.Header.Get("Connection") != "keep-alive" {
			t.Fatalf("%d close=%v Connection %q", res.StatusCode, res.Close, res.Header.Get("Connection"))
		}
	}
}

// TestMalformedCloses: a malformed request is answered 400 (431, 505) with Connection:
// close and the connection is closed, also after good requests on the same connection.
func TestMalformedCloses(t *testing.T) {
	s := start(t, &Server{})
	for _, ca := range casesParse {
		if ca.status == 0 {
			continue
		}
		t.Run(ca.desc, func(t *testing.T) {
			t.Parallel() // each waits out the server's linger
			c, br := dial(t, s)
			io.WriteString(c, "GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\n\r\n"+ca.in)
			if res, _ := readAnswer(t, br, "GET"); res.StatusCode != 302 {
				t.Fatalf("first answer %d", res.StatusCode)
			}
			res, _ := readAnswer(t, br, "GET")
			if res.StatusCode != ca.status || !res.Close || res.Header.Get("Location") != "" {
				t.Errorf("%d close=%v, want %d and close", res.StatusCode, res.Close, ca.status)
			}
			expectClosed(t, c, br)
		})
	}
}

// TestRequestBody: a request with a body is answered and the connection closed, since the
// body is never read.
func TestRequestBody(t *testing.T) {
	s := start(t, &Server{})
	c, br := dial(t, s)
	io.WriteString(c, "POST /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello")
	if res, _ := readAnswer(t, br, "POST"); res.StatusCode != 405 || !res.Close {
		t.Fatalf("%d close=%v", res.StatusCode, res.Close)
	}
	expectClosed(t, c, br)
}

// TestIdleTimeout: a keep-alive connection silent for IdleTimeout is closed.
func TestIdleTimeout(t *testing.T) {
	s := start(t, &Server{IdleTimeout: 200 * time.Millisecond})
	c, br := dial(t, s)
	get(t, c, http.StatusFound)
	expectClosed(t, c, br)
}

// TestBadRequestCounted: a malformed request is counted bad_request and logged at debug.
func TestBadRequestCounted(t *testing.T) {
	m := &countingMetrics{}
	s := start(t, &Server{Metrics: m})
	c, br := dial(t, s)
	io.WriteString(c, "GET /cam1/index.m3u8 HTTP/3.0\r\nHost: gw\r\n\r\n")
	if res, _ := readAnswer(t, br, "GET"); res.StatusCode != http.StatusHTTPVersionNotSupported || !res.Close {
		t.Fatalf("%d close=%v", res.StatusCode, res.Close)
	}
	expectClosed(t, c, br)
	if n := m.count(OutcomeBadRequest); n != 1 {
		t.Fatalf("bad_request counted %d times", n)
	}
}

type panicResolver struct{}

func (panicResolver) Resolve(resolve.Request) resolve.Result { panic("resolver bug") }

// TestHandlerPanic: a panic while answering closes that connection only; the listener goes on.
func TestHandlerPanic(t *testing.T) {
	s := start(t, &Server{Resolver: panicResolver{}})
	c, br := dial(t, s)
	io.WriteString(c, "GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\n\r\n")
	expectClosed(t, c, br)
	res := raw(t, s.Addr(), "OPTIONS", "OPTIONS /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
	if res.StatusCode != 204 {
		t.Fatalf("after a panic: %d", res.StatusCode)
	}
}
