package httpgw

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// casesParse is the request-head parser's table; it seeds FuzzParse and FuzzServeConn.
var casesParse = []struct {
	desc   string
	in     string
	status int // 0: parsed
	method string
	target string
	minor  int
	keep   bool
	body   bool
	xff    []string
	xfp    string
}{
	{"get", "GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\n\r\n", 0, "GET", "/cam1/index.m3u8", 1, true, false, nil, ""},
	{"LF only", "GET /a HTTP/1.1\nHost: gw\n\n", 0, "GET", "/a", 1, true, false, nil, ""},
	{"leading empty line", "\r\nHEAD /a?b=c HTTP/1.1\r\nHost: gw\r\n\r\n", 0, "HEAD", "/a?b=c", 1, true, false, nil, ""},
	{"close", "GET /a HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n", 0, "GET", "/a", 1, false, false, nil, ""},
	{"close among tokens", "GET /a HTTP/1.1\r\nHost: gw\r\nconnection: Upgrade, CLOSE\r\n\r\n", 0, "GET", "/a", 1, false, false, nil, ""},
	{"1.0", "GET /a HTTP/1.0\r\n\r\n", 0, "GET", "/a", 0, false, false, nil, ""},
	{"1.0 keep-alive", "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0, "GET", "/a", 0, true, false, nil, ""},
	{"options star", "OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n", 0, "OPTIONS", "*", 1, true, false, nil, ""},
	{"other method", "PROPFIND /a HTTP/1.1\r\nHost: gw\r\n\r\n", 0, "PROPFIND", "/a", 1, true, false, nil, ""},
	{"body", "POST /a HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello", 0, "POST", "/a", 1, true, true, nil, ""},
	{"empty body", "POST /a HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n", 0, "POST", "/a", 1, true, false, nil, ""},
	{"chunked", "POST /a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, "POST", "/a", 1, true, true, nil, ""},
	{"forwarded", "GET /a HTTP/1.1\r\nHost: gw\r\nX-Forwarded-For: 1.2.3.4, 10.0.0.1\r\nx-forwarded-for:\t10.0.0.2 \r\nX-Forwarded-Proto: https\r\nX-Forwarded-Proto: http\r\n\r\n",
		0, "GET", "/a", 1, true, false, []string{"1.2.3.4, 10.0.0.1", "10.0.0.2"}, "https"},
	{"absolute form", "GET http://evil.com/cam1/index.m3u8 HTTP/1.1\r\nHost: evil.com\r\n\r\n", 0, "GET", "http://evil.com/cam1/index.m3u8", 1, true, false, nil, ""},
	{"raw UTF-8 target", "GET /a?t=k\xc3\xa4se HTTP/1.1\r\nHost: gw\r\n\r\n", 0, "GET", "/a?t=k\xc3\xa4se", 1, true, false, nil, ""},

	{"no Host on 1.1", "GET /a HTTP/1.1\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"two Hosts", "GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"no version", "GET /a\r\nHost: gw\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"CRLF in target", "GET /cam1\r\nLocation: http://evil.com/index.m3u8 HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"bare CR in target", "GET /cam1\rx/index.m3u8 HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"NUL in target", "GET /a\x00 HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"tab in target", "GET /a/\tb HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"DEL in target", "GET /a\x7f HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"double space", "GET  /a HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"empty method", " /a HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"bad method", "G(T /a HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"HTTP/2", "GET /a HTTP/2.0\r\nHost: gw\r\n\r\n", 505, "", "", 0, false, false, nil, ""},
	{"HTTP/1.2", "GET /a HTTP/1.2\r\nHost: gw\r\n\r\n", 505, "", "", 0, false, false, nil, ""},
	{"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "", "", 0, false, false, nil, ""},
	{"not HTTP", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", 400, "", "", 0, false, false, nil, ""},
	{"folded field", "GET /a HTTP/1.1\r\nHost: gw\r\nX-A: b\r\n c\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"space before colon", "GET /a HTTP/1.1\r\nHost : gw\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"no colon", "GET /a HTTP/1.1\r\nHost gw\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"CR in value", "GET /a HTTP/1.1\r\nHost: gw\r\nX-A: b\rc\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"NUL in value", "GET /a HTTP/1.1\r\nHost: gw\r\nX-A: b\x00\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"bad length", "POST /a HTTP/1.1\r\nHost: gw\r\nContent-Length: 1x\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"two lengths", "POST /a HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"huge length", "POST /a HTTP/1.1\r\nHost: gw\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, "", "", 0, false, false, nil, ""},
	{"head too large", "GET /a HTTP/1.1\r\nHost: gw\r\nX-Big: " + strings.Repeat("b", 21<<10) + "\r\n\r\n", 431, "", "", 0, false, false, nil, ""},
	{"too many fields", "GET /a HTTP/1.1\r\nHost: gw\r\n" + strings.Repeat("X-A: b\r\n", 3000) + "\r\n", 431, "", "", 0, false, false, nil, ""},
}

func TestParse(t *testing.T) {
	for _, ca := range casesParse {
		p := parser{limit: DefaultMaxHeaderBytes + headSlack}
		var h head
		err := p.parse(bufio.NewReaderSize(strings.NewReader(ca.in), readBufSize), &h)
		if ca.status != 0 {
			var he *headError
			if !errors.As(err, &he) || he.status != ca.status {
				t.Errorf("%s: err %v, want status %d", ca.desc, err, ca.status)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", ca.desc, err)
			continue
		}
		if h.method != ca.method || h.target != ca.target || h.minor != ca.minor || h.keepAlive != ca.keep || h.body != ca.body ||
			!slices.Equal(h.xff, ca.xff) || h.xfp != ca.xfp {
			t.Errorf("%s: %+v", ca.desc, h)
		}
	}
	// A truncated head is the connection's error, not a malformed request.
	var h head
	p := parser{limit: 1 << 10}
	if err := p.parse(bufio.NewReader(strings.NewReader("GET /a HTTP/1.1\r\nHo")), &h); !errors.Is(err, io.EOF) {
		t.Errorf("truncated head: %v", err)
	}
}

func TestSplitTarget(t *testing.T) {
	for _, ca := range []struct{ in, path, query string }{
		{"/a/b?c=d", "/a/b", "c=d"},
		{"/a", "/a", ""},
		{"/a?", "/a", ""},
		{"http://evil.com/cam1/index.m3u8?t=1", "/cam1/index.m3u8", "t=1"},
		{"HTTPS://evil.com", "", ""},
		{"http://evil.com?x=1", "", "x=1"},
		{"*", "*", ""},
		{"o1.test:443", "o1.test:443", ""},
		{"1http://x/a", "1http://x/a", ""},
	} {
		if p, q := splitTarget(ca.in); p != ca.path || q != ca.query {
			t.Errorf("%q: %q %q, want %q %q", ca.in, p, q, ca.path, ca.query)
		}
	}
}

// FuzzParse: whatever the bytes, the parser returns a head whose target has no control
// byte or space and whose method is a token, or an error; a malformed head is 400, 431 or
// 505.
func FuzzParse(f *testing.F) {
	for _, ca := range casesParse {
		f.Add([]byte(ca.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p := parser{limit: 2 << 10}
		var h head
		err := p.parse(bufio.NewReaderSize(bytes.NewReader(in), 64), &h)
		if err != nil {
			var he *headError
			if errors.As(err, &he) && he.status != 400 && he.status != 431 && he.status != 505 {
				t.Fatalf("status %d", he.status)
			}
			return
		}
		if h.target == "" || strings.ContainsFunc(h.target, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			t.Fatalf("target %q", h.target)
		}
		for i := range len(h.method) {
			if !isToken(h.method[i]) {
				t.Fatalf("method %q", h.method)
			}
		}
		if h.minor != 0 && h.minor != 1 {
			t.Fatalf("minor %d", h.minor)
		}
	})
}

// memConn is a connection whose peer sent in and then closed; what the server writes is kept.
type memConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *memConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// serveBytes runs one connection of the listener's server over in and returns what it wrote.
func serveBytes(in []byte) []byte {
	h := &handler{res: newFake(), log: slog.New(slog.DiscardHandler), metrics: nopMetrics{}, retryAfter: []string{"2"}}
	w := newWire(h, h.log, nil, time.Second, time.Second, time.Second, 1<<10)
	c := &memConn{in: bytes.NewReader(in)}
	wc := &wconn{c: c}
	w.conns[wc] = struct{}{}
	w.wg.Add(1)
	w.serveConn(wc, time.Now())
	return c.out.Bytes()
}

// FuzzServeConn: whatever a client sends, the server answers with well-formed HTTP/1.1
// responses, never redirects outside the registry, and ends a malformed request with 4xx/505
// and Connection: close (then nothing more).
func FuzzServeConn(f *testing.F) {
	for _, ca := range casesParse {
		f.Add([]byte(ca.in))
	}
	for _, ca := range casesHostile {
		f.Add([]byte(ca.request + "\r\n"))
	}
	f.Add([]byte("GET /cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\n\r\nHEAD /nosuch/index.m3u8 HTTP/1.1\r\nHost: gw\r\n\r\nGET /cam1/index.m3u8 HTTP/1.0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out := serveBytes(in)
		// The methods of the requests, in order, to frame the answers (HEAD has no body).
		var methods []string
		p, rd := parser{limit: 1 << 10}, bufio.NewReaderSize(bytes.NewReader(in), readBufSize)
		for {
			var h head
			if p.parse(rd, &h) != nil {
				break
			}
			methods = append(methods, h.method)
		}
		br := bufio.NewReader(bytes.NewReader(out))
		for i := 0; ; i++ {
			if _, err := br.Peek(1); err == io.EOF {
				return
			}
			method := "GET"
			if i < len(methods) {
				method = methods[i]
			}
			res, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("answer does not parse: %v\n%q", err, out)
			}
			if i >= len(methods) && (res.StatusCode != 400 && res.StatusCode != 431 && res.StatusCode != 505 || !res.Close) {
				t.Fatalf("malformed request answered %d close=%v", res.StatusCode, res.Close)
			}
			if _, err := io.ReadAll(res.Body); err != nil {
				t.Fatalf("answer %d: body: %v\n%q", i, err, out)
			}
			res.Body.Close()
			if loc := res.Header.Get("Location"); loc != "" {
				u, err := url.Parse(loc)
				if err != nil || !registryHosts[u.Host] || u.User != nil || res.StatusCode != 302 {
					t.Fatalf("%d Location %q leaves the registry", res.StatusCode, loc)
				}
			}
			if res.Close {
				if rest, _ := io.ReadAll(br); len(rest) > 0 {
					t.Fatalf("bytes after Connection: close: %q", rest)
				}
				return
			}
		}
	})
}
