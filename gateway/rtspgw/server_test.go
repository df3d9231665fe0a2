package rtspgw

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/internal/logtest"
)

// fakeResolver knows a few names; "evil.com" style bases are in it on purpose, so a sloppy
// parser that let a hostile path pick the host would be caught. Place sends publishers to
// origin (a stand-in origin's base URL; none: 503), "dead" to a closed port and any name in
// others to the base given there.
type fakeResolver struct {
	origin string
	others map[string]string
}

func (fakeResolver) Resolve(req resolve.Request) resolve.Result {
	switch req.Name {
	case "live/cam1", "evil.com":
		return resolve.Result{Outcome: resolve.OK, OriginID: "o1", BaseURL: "rtsp://o1.example.net:8555", Scheme: "rtsp",
			Route: resolve.RouteRelay, Spilled: true}
	case "busy":
		return resolve.Result{Outcome: resolve.Unavailable}
	}
	return resolve.Result{Outcome: resolve.NotFound}
}

func (f fakeResolver) Place(req resolve.Request) resolve.Result {
	switch req.Name {
	case "live/none":
		return resolve.Result{Outcome: resolve.NotFound}
	case "busy":
		return resolve.Result{Outcome: resolve.Unavailable}
	case "dead":
		return resolve.Result{Outcome: resolve.OK, OriginID: "dead", BaseURL: "rtsp://127.0.0.1:1", Scheme: "rtsp"}
	case "hostile":
		return resolve.Result{Outcome: resolve.OK, OriginID: "bad", BaseURL: "rtsp://user@evil.com/x", Scheme: "rtsp"}
	}
	if b, ok := f.others[req.Name]; ok {
		return resolve.Result{Outcome: resolve.OK, OriginID: req.Name, BaseURL: b, Scheme: b[:strings.Index(b, ":")]}
	}
	if f.origin == "" {
		return resolve.Result{Outcome: resolve.Unavailable}
	}
	return resolve.Result{Outcome: resolve.OK, OriginID: "o1", BaseURL: f.origin, Scheme: "rtsp"}
}

const registered = "rtsp://o1.example.net:8555/"

// fullPublic is what a real server lists; GStreamer needs SETUP in it before it sends DESCRIBE.
const fullPublic = "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, PAUSE, GET_PARAMETER, TEARDOWN"

func startServer(t *testing.T, mut func(*Server)) *Server {
	t.Helper()
	s := &Server{Address: "127.0.0.1:0", Resolver: fakeResolver{}, Logger: slog.New(slog.DiscardHandler)}
	if mut != nil {
		mut(s)
	}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// exchange sends raw requests on one connection and reads one response per request.
func exchange(t *testing.T, addr string, raw ...string) ([]*base.Response, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	var out []*base.Response
	for _, r := range raw {
		if _, err := io.WriteString(c, r); err != nil {
			t.Fatal(err)
		}
		var res base.Response
		if err := res.Unmarshal(br); err != nil {
			t.Fatalf("reading the answer to %q: %v", r, err)
		}
		out = append(out, &res)
	}
	return out, c
}

func req(method, url string, cseq int) string {
	return method + " " + url + " RTSP/1.0\r\nCSeq: " + string(rune('0'+cseq)) + "\r\nUser-Agent: test\r\n\r\n"
}

func TestAnswers(t *testing.T) {
	s := startServer(t, nil)
	gw := "rtsp://" + s.Addr().String()
	cases := []struct {
		desc, method, path string
		status             base.StatusCode
		location           string
	}{
		{"describe", "DESCRIBE", "/live/cam1", base.StatusFound, registered + "live/cam1"},
		{"describe trailing slash", "DESCRIBE", "/live/cam1/", base.StatusFound, registered + "live/cam1/"},
		{"query and token kept", "DESCRIBE", "/live/cam1?token=abc&x=1", base.StatusFound, registered + "live/cam1?token=abc&x=1"},
		{"unknown", "DESCRIBE", "/live/none", base.StatusNotFound, ""},
		{"unavailable", "DESCRIBE", "/busy", base.StatusServiceUnavailable, ""},
		{"setup track path", "DESCRIBE", "/live/cam1/trackID=0", base.StatusNotFound, ""},
		{"dot dot", "DESCRIBE", "/live/../cam1", base.StatusNotFound, ""},
		{"double slash host", "DESCRIBE", "//evil.com/x", base.StatusNotFound, ""},
		{"escaped slashes", "DESCRIBE", "/%2F%2Fevil.com", base.StatusNotFound, ""},
		{"escaped backslash", "DESCRIBE", "/%5Cevil.com", base.StatusNotFound, ""},
		{"long name", "DESCRIBE", "/" + strings.Repeat("a", 300), base.StatusNotFound, ""},
		{"setup before announce", "SETUP", "/live/cam1/trackID=0", base.StatusMethodNotValidInThisState, ""},
		{"play", "PLAY", "/live/cam1", base.StatusMethodNotValidInThisState, ""},
		{"record before announce", "RECORD", "/live/cam1", base.StatusMethodNotValidInThisState, ""},
		{"get_parameter keep-alive", "GET_PARAMETER", "/live/cam1", base.StatusOK, ""},
		{"unknown method", "REDIRECT", "/live/cam1", base.StatusMethodNotAllowed, ""},
		{"announce unknown", "ANNOUNCE", "/live/none", base.StatusNotFound, ""},
		{"announce nobody eligible", "ANNOUNCE", "/busy", base.StatusServiceUnavailable, ""},
		{"announce bad path", "ANNOUNCE", "/live/../cam1", base.StatusNotFound, ""},
		{"announce hostile path", "ANNOUNCE", "//evil.com/x", base.StatusNotFound, ""},
		{"announce bad query", "ANNOUNCE", "/live/cam1?a=\xc3\xa9", base.StatusBadRequest, ""},
		{"announce origin unreachable", "ANNOUNCE", "/dead", base.StatusBadGateway, ""},
		{"announce origin with a bad base", "ANNOUNCE", "/hostile", base.StatusBadGateway, ""},
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			res, _ := exchange(t, s.Addr().String(), req(c.method, gw+c.path, 2))
			r := res[0]
			if r.StatusCode != c.status {
				t.Fatalf("%s %s: %d, want %d", c.method, c.path, r.StatusCode, c.status)
			}
			loc := r.Header["Location"]
			if c.location == "" && len(loc) != 0 {
				t.Fatalf("unexpected Location %v", loc)
			}
			if c.location != "" && (len(loc) != 1 || loc[0] != c.location) {
				t.Fatalf("Location %v, want %q", loc, c.location)
			}
			if len(loc) == 1 && !strings.HasPrefix(loc[0], registered) {
				t.Fatalf("Location %q leaves the registry", loc[0])
			}
			if cs := r.Header["CSeq"]; len(cs) != 1 || cs[0] != "2" {
				t.Fatalf("CSeq %v, want [2]", cs)
			}
			if c.status == base.StatusServiceUnavailable && len(r.Header["Retry-After"]) != 1 {
				t.Fatal("503 without Retry-After")
			}
		})
	}
}

// OPTIONS is answered 200 (gortsplib clients break on a redirected OPTIONS), and the same
// connection then takes the DESCRIBE, as FFmpeg and live555 send them.
func TestOptionsThenDescribe(t *testing.T) {
	s := startServer(t, nil)
	gw := "rtsp://" + s.Addr().String()
	res, _ := exchange(t, s.Addr().String(), req("OPTIONS", gw+"/live/cam1", 1), req("DESCRIBE", gw+"/live/cam1", 2))
	if res[0].StatusCode != base.StatusOK || len(res[0].Header["Location"]) != 0 || res[0].Header["Public"][0] != fullPublic {
		t.Fatalf("OPTIONS: %v", res[0])
	}
	if res[1].StatusCode != base.StatusFound || res[1].Header["Location"][0] != registered+"live/cam1" {
		t.Fatalf("DESCRIBE: %v", res[1])
	}
}

// Bad input gets 400 and a closed connection; the server keeps serving others.
func TestBadInput(t *testing.T) {
	s := startServer(t, func(s *Server) { s.MaxRequestBytes = 1024; s.ReadTimeout = 300 * time.Millisecond })
	addr := s.Addr().String()
	gw := "rtsp://" + addr
	for _, c := range []struct{ desc, raw string }{
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n"},
		{"http", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"no cseq", "DESCRIBE " + gw + "/live/cam1 RTSP/1.0\r\n\r\n"},
		{"oversized", "DESCRIBE " + gw + "/live/cam1 RTSP/1.0\r\nCSeq: 1\r\nX-Pad: " + strings.Repeat("a", 4096) + "\r\n\r\n"},
		{"cr lf in url", "DESCRIBE " + gw + "/live/cam1\r\nLocation: rtsp://evil.com/ RTSP/1.0\r\nCSeq: 1\r\n\r\n"},
	} {
		t.Run(c.desc, func(t *testing.T) {
			cn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer cn.Close()
			cn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(cn, c.raw)
			all, _ := io.ReadAll(cn) // the server closes
			if strings.Contains(string(all), "Location") {
				t.Fatalf("answered with a Location: %q", all)
			}
			if len(all) > 0 && !strings.HasPrefix(string(all), "RTSP/1.0 400") {
				t.Fatalf("answer %q, want 400 or a closed connection", all)
			}
		})
	}
	// A client that sends nothing is cut off after ReadTimeout.
	cn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	cn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(cn, "DESC")
	start := time.Now()
	if _, err := io.ReadAll(cn); err != nil {
		t.Fatalf("slow client: %v, want the server to close", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("slow client cut off after %v", d)
	}
	// Still serving.
	res, _ := exchange(t, addr, req("DESCRIBE", gw+"/live/cam1", 3))
	if res[0].StatusCode != base.StatusFound {
		t.Fatalf("after bad input: %v", res[0])
	}
}

func TestConnectionCap(t *testing.T) {
	s := startServer(t, func(s *Server) { s.MaxConns = 1 })
	addr := s.Addr().String()
	// The first connection is answered; a second one is closed at once.
	res, _ := exchange(t, addr, req("OPTIONS", "rtsp://"+addr+"/x", 1))
	if res[0].StatusCode != base.StatusOK {
		t.Fatalf("first connection: %v", res[0])
	}
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(second, req("OPTIONS", "rtsp://"+addr+"/x", 1))
	if b, _ := io.ReadAll(second); len(b) != 0 {
		t.Fatalf("connection over the cap answered %q", b)
	}
}

// TestRedirectLogLine: the connection's log line names the origin and the route the
// resolver took to it (owner, relay, new_relay, ondemand; /spilled).
func TestRedirectLogLine(t *testing.T) {
	logs := &logtest.Buffer{}
	s := startServer(t, func(s *Server) { s.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })
	res, c := exchange(t, s.Addr().String(), req("DESCRIBE", "rtsp://"+s.Addr().String()+"/live/cam1", 1))
	if res[0].StatusCode != base.StatusFound {
		t.Fatalf("status %d", res[0].StatusCode)
	}
	c.Close()
	var line map[string]any
	eventually(t, "the log line", func() bool {
		for _, l := range logs.Records() {
			if l["msg"] == "rtsp connection" {
				line = l
				return true
			}
		}
		return false
	})
	if line["origin"] != "o1" || line["route"] != "relay/spilled" || line["outcome"] != "ok" {
		t.Fatalf("log line %v", line)
	}
}
