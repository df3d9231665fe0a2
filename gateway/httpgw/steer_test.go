package httpgw

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/pubauth"
	"github.com/peergate/peergate/shared/streamname"
)

const steerCam = "live/cam1"

// steerTable holds live/cam1 on owner "own" (announced with its codecs) and relay "r1";
// "o3" runs nothing.
func steerTable(spillAt float64) *resolve.Table {
	t := resolve.New(resolve.Options{Hysteresis: resolve.DefaultHysteresis, SpillAt: spillAt})
	for _, id := range []string{"own", "r1", "o3"} {
		t.PutOrigin(cluster.Origin{ID: id, State: cluster.StateUp, Capacity: cluster.Capacity{MaxClients: 100},
			Public: cluster.Public{"http": "http://" + id + ".test:8081"}})
	}
	t.PutStreams("own", []cluster.Stream{{Name: steerCam, State: cluster.StreamRunning,
		Meta: cluster.StreamMeta{Codecs: "avc1.64001f,mp4a.40.2", Width: 1280, Height: 720, BitrateBps: 1_500_000}}})
	t.PutStreams("r1", []cluster.Stream{{Name: steerCam, State: cluster.StreamRunning, Upstream: "own"}})
	t.PutStreams("o3", nil)
	return t
}

// setState changes an origin's state or load in the table.
func setOrigin(t *resolve.Table, id, state string, clients int64) {
	t.PutOrigin(cluster.Origin{ID: id, State: state, Capacity: cluster.Capacity{MaxClients: 100},
		Load:   cluster.Load{Clients: clients},
		Public: cluster.Public{"http": "http://" + id + ".test:8081"}})
}

type steerAnswer struct {
	Version  int      `json:"VERSION"`
	TTL      int      `json:"TTL"`
	Reload   string   `json:"RELOAD-URI"`
	Priority []string `json:"PATHWAY-PRIORITY"`
	Clones   []struct {
		BaseID string            `json:"BASE-ID"`
		ID     string            `json:"ID"`
		Repl   map[string]string `json:"URI-REPLACEMENT"`
	} `json:"PATHWAY-CLONES"`
}

// get sends one request through the real listener.
func sget(t *testing.T, s *Server, target string) (*http.Response, string) {
	t.Helper()
	res := raw(t, s.Addr(), "GET", "GET "+target+" HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// playlistVariants reads (pathway, uri, stream-inf) of a multivariant playlist, and its steering tag.
func playlistVariants(t *testing.T, body string) (steer string, vs [][3]string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if lines[0] != "#EXTM3U" {
		t.Fatalf("not a playlist: %q", body)
	}
	for i, l := range lines {
		if strings.HasPrefix(l, "#EXT-X-CONTENT-STEERING:") {
			steer = l
		}
		if strings.HasPrefix(l, "#EXT-X-STREAM-INF:") {
			_, p, _ := strings.Cut(l, `PATHWAY-ID="`)
			p, _, _ = strings.Cut(p, `"`)
			vs = append(vs, [3]string{p, lines[i+1], l})
		}
	}
	return steer, vs
}

// TestSteeringMultivariant: with steering on, an HLS entry is a multivariant playlist with
// one pathway per copy, the redirect's origin first, absolute URIs on the registry's hosts
// carrying the viewer's query; every other stream URL keeps its 302.
func TestSteeringMultivariant(t *testing.T) {
	t.Parallel()
	tb := steerTable(0.8)
	s := start(t, &Server{Resolver: tb, Steering: tb})
	res, body := sget(t, s, "/live/cam1/index.m3u8?token=abc")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != contentM3U8 ||
		res.Header.Get("Access-Control-Allow-Origin") != "*" || res.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v\n%s", res.StatusCode, res.Header, body)
	}
	steer, vs := playlistVariants(t, body)
	want := tb.Resolve(resolve.Request{Name: steerCam, Proto: resolve.ProtoHTTP, Client: "127.0.0.1"})
	if len(vs) != 2 || vs[0][0] != want.OriginID {
		t.Fatalf("variants %q, want %s first\n%s", vs, want.OriginID, body)
	}
	if want := `#EXT-X-CONTENT-STEERING:SERVER-URI="/_peergate/steering?stream=live%2Fcam1&token=abc",PATHWAY-ID="` + vs[0][0] + `"`; steer != want {
		t.Errorf("steering tag %q, want %q", steer, want)
	}
	for _, v := range vs {
		u, err := url.Parse(v[1])
		if err != nil || u.Host != v[0]+".test:8081" || u.Scheme != "http" || u.RequestURI() != "/live/cam1/main_stream.m3u8?token=abc" {
			t.Errorf("pathway %s: URI %q", v[0], v[1])
		}
		// The relay announced nothing: it borrows the owner's description.
		if !strings.Contains(v[2], `BANDWIDTH=1500000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720`) {
			t.Errorf("pathway %s: %q", v[0], v[2])
		}
	}
	// Other stream URLs and names are answered as without steering.
	for target, code := range map[string]int{
		"/live/cam1/main_stream.m3u8": 302, "/live/cam1/mpegts": 302, "/live/other/index.m3u8": 404,
		"/live/cam1/index.m3u8?a=%zz": 200, "/live/cam1/index.m3u8?a=b#c": 400,
	} {
		if res, body := sget(t, s, target); res.StatusCode != code {
			t.Errorf("%s: %d, want %d\n%s", target, res.StatusCode, code, body)
		}
	}
	// A full or draining copy is not offered to a new viewer (ffmpeg opens a session on every
	// variant it probes); the first copy stays whatever Resolve answers.
	for _, state := range []struct {
		state   string
		clients int64
	}{{cluster.StateUp, 100}, {cluster.StateDraining, 0}} {
		other := "r1"
		if want.OriginID == "r1" {
			other = "own"
		}
		setOrigin(tb, other, state.state, state.clients)
		_, body := sget(t, s, "/live/cam1/index.m3u8")
		if _, vs := playlistVariants(t, body); len(vs) != 1 || vs[0][0] != want.OriginID {
			t.Errorf("%s %s with %d clients: variants %q, want only %s", other, state.state, state.clients, vs, want.OriginID)
		}
		setOrigin(tb, other, cluster.StateUp, 0)
	}
	// HEAD has the headers and no body.
	hr := raw(t, s.Addr(), "HEAD", "HEAD /live/cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
	if b, _ := io.ReadAll(hr.Body); hr.StatusCode != 200 || len(b) != 0 || hr.ContentLength <= 0 {
		t.Errorf("HEAD: %d, %d bytes, Content-Length %d", hr.StatusCode, len(b), hr.ContentLength)
	}
}

// TestSteeringFallsBack: a stream its origins serve with another playlist layout (H.265), a
// stream with no eligible copy, and a gateway without steering answer as the redirect does.
func TestSteeringFallsBack(t *testing.T) {
	t.Parallel()
	tb := steerTable(0.8)
	tb.PutStreams("o3", []cluster.Stream{{Name: "live/hevc", State: cluster.StreamRunning, Meta: cluster.StreamMeta{Codecs: "hvc1.1.6.L93.B0"}}})
	s := start(t, &Server{Resolver: tb, Steering: tb})
	if res, _ := sget(t, s, "/live/hevc/index.m3u8"); res.StatusCode != 302 || !strings.HasPrefix(res.Header.Get("Location"), "http://o3.test:8081/") {
		t.Errorf("hevc: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	setOrigin(tb, "own", cluster.StateDraining, 0)
	setOrigin(tb, "r1", cluster.StateDraining, 0)
	setOrigin(tb, "o3", cluster.StateDraining, 0) // else the spill target
	if res, _ := sget(t, s, "/live/cam1/index.m3u8"); res.StatusCode != 503 || res.Header.Get("Retry-After") == "" {
		t.Errorf("all draining: %d", res.StatusCode)
	}
	off := start(t, &Server{Resolver: steerTable(0.8)})
	if res, _ := sget(t, off, "/live/cam1/index.m3u8"); res.StatusCode != 302 {
		t.Errorf("steering off: %d", res.StatusCode)
	}
	if res, _ := sget(t, off, SteeringPath+"?stream=live%2Fcam1"); res.StatusCode != 404 {
		t.Errorf("steering endpoint with steering off: %d", res.StatusCode)
	}
}

// TestSteeringAnswer: the steering endpoint puts the redirect's choice first, lowers a
// draining origin at once (still listed), drops a dead one, offers clones of the player's
// pathway for copies it may not have, and refuses bad input.
func TestSteeringAnswer(t *testing.T) {
	t.Parallel()
	tb := steerTable(0.8)
	s := start(t, &Server{Resolver: tb, Steering: tb, SteeringTTL: 3 * time.Second})
	ask := func(q string) (steerAnswer, *http.Response) {
		t.Helper()
		res, body := sget(t, s, SteeringPath+"?"+q)
		var a steerAnswer
		if res.StatusCode == 200 {
			if res.Header.Get("Content-Type") != contentJSON || res.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Fatalf("headers %v", res.Header)
			}
			if err := json.Unmarshal([]byte(body), &a); err != nil {
				t.Fatalf("%v: %q", err, body)
			}
		}
		return a, res
	}
	a, _ := ask("stream=live%2Fcam1&token=abc&_HLS_pathway=own&_HLS_throughput=123456")
	if a.Version != 1 || a.TTL != 3 || len(a.Priority) != 2 || a.Priority[0] != "own" ||
		a.Reload != "/_peergate/steering?stream=live%2Fcam1&token=abc" {
		t.Fatalf("answer %+v", a)
	}
	if len(a.Clones) != 1 || a.Clones[0].BaseID != "own" || a.Clones[0].ID != "r1" || a.Clones[0].Repl["HOST"] != "r1.test:8081" {
		t.Errorf("clones %+v", a.Clones)
	}
	// The owner drains: the relay first at once, the owner still listed.
	setOrigin(tb, "own", cluster.StateDraining, 0)
	if a, _ := ask("stream=live%2Fcam1&_HLS_pathway=own"); fmt.Sprint(a.Priority) != "[r1 own]" {
		t.Errorf("draining owner: %v", a.Priority)
	}
	// The owner is gone: not listed.
	tb.DropOrigin("own")
	if a, _ := ask("stream=live%2Fcam1&_HLS_pathway=own"); fmt.Sprint(a.Priority) != "[r1]" || len(a.Clones) != 0 {
		t.Errorf("dead owner: %+v", a)
	}
	for q, code := range map[string]int{
		"stream=live%2Fnope":                     404,
		"token=abc":                              400, // no stream
		"stream=live%2Fcam1&_HLS_pathway=a%22b":  400,
		"stream=live%2Fcam1&_HLS_throughput=1.5": 400,
		"stream=..%2Fetc":                        400,
		"stream=live%2Fcam1%zz":                  400,
		"stream=live%2Fcam1&x=\x7f":              400,
	} {
		if _, res := ask(q); res.StatusCode != code {
			t.Errorf("%q: %d, want %d", q, res.StatusCode, code)
		}
	}
}

// TestSteeringSticky: the steering answer and the multivariant playlist put the same origin
// first for one viewer as the redirect does, with the sticky parameter as the key.
func TestSteeringSticky(t *testing.T) {
	t.Parallel()
	tb := resolve.New(resolve.Options{Hysteresis: resolve.DefaultHysteresis})
	for _, id := range []string{"a", "b", "c", "d"} {
		tb.PutOrigin(cluster.Origin{ID: id, State: cluster.StateUp, Public: cluster.Public{"http": "http://" + id + ".test:8081"}})
		tb.PutStreams(id, []cluster.Stream{{Name: steerCam, State: cluster.StreamRunning}})
	}
	s := start(t, &Server{Resolver: tb, Steering: tb, StickyParam: "tok"})
	firsts := map[string]bool{}
	for i := range 12 {
		q := fmt.Sprintf("tok=viewer%d", i)
		want := tb.Resolve(resolve.Request{Name: steerCam, Proto: resolve.ProtoHTTP, Client: fmt.Sprintf("viewer%d", i)}).OriginID
		_, body := sget(t, s, "/live/cam1/index.m3u8?"+q)
		if _, vs := playlistVariants(t, body); len(vs) != 4 || vs[0][0] != want {
			t.Fatalf("viewer %d: variants %q, want %s first", i, vs, want)
		}
		_, body = sget(t, s, SteeringPath+"?stream=live%2Fcam1&"+q+"&_HLS_pathway="+want)
		var a steerAnswer
		if err := json.Unmarshal([]byte(body), &a); err != nil || len(a.Priority) != 4 || a.Priority[0] != want {
			t.Fatalf("viewer %d: %q, want %s first", i, body, want)
		}
		firsts[want] = true
	}
	if len(firsts) < 2 {
		t.Errorf("12 viewers all on %v: stickiness ignores the key", firsts)
	}
}

// TestSteeringKeepsPlayerPathway: a player stays on its pathway while that copy can take
// viewers, whatever the redirect would choose now; it is moved when its copy is filled to
// spill_at, full, draining or gone.
func TestSteeringKeepsPlayerPathway(t *testing.T) {
	t.Parallel()
	tb := steerTable(0.8)
	s := start(t, &Server{Resolver: tb, Steering: tb})
	first := func(pathway string) (string, string) {
		t.Helper()
		_, body := sget(t, s, SteeringPath+"?stream=live%2Fcam1&_HLS_pathway="+pathway)
		var a steerAnswer
		if err := json.Unmarshal([]byte(body), &a); err != nil || len(a.Priority) == 0 {
			t.Fatalf("%v: %q", err, body)
		}
		return a.Priority[0], fmt.Sprint(a.Priority)
	}
	// The redirect answers own; a player on r1 stays there.
	if got, all := first("r1"); got != "r1" || all != "[r1 own]" {
		t.Fatalf("player on r1: %s", all)
	}
	if got, _ := first("own"); got != "own" {
		t.Fatalf("player on own: %s", got)
	}
	// r1 filled to spill_at (80 of 100 clients): its players go back to the owner.
	setOrigin(tb, "r1", cluster.StateUp, 80)
	if got, all := first("r1"); got != "own" {
		t.Fatalf("crowded r1: %s", all)
	}
	// r1 has room again; the owner fills up past spill_at: owner players move to the relay.
	setOrigin(tb, "r1", cluster.StateUp, 10)
	setOrigin(tb, "own", cluster.StateUp, 85)
	if got, all := first("own"); got != "r1" {
		t.Fatalf("crowded owner: %s", all)
	}
	// The owner is full: still listed (after r1), never first.
	setOrigin(tb, "own", cluster.StateUp, 100)
	if got, all := first("own"); got != "r1" || all != "[r1 own]" {
		t.Fatalf("full owner: %s", all)
	}
}

// TestSteeringAuth: with play tokens on, both answers need a valid token.
func TestSteeringAuth(t *testing.T) {
	t.Parallel()
	const secret = "steer-play-secret-0123"
	tb := steerTable(0.8)
	s := start(t, &Server{Resolver: tb, Steering: tb, AuthorizePlay: pubauth.PlayAuthorizer(secret)})
	tok := pubauth.TokenQuery(secret, steerCam, time.Now().Add(time.Hour).Unix(), "")
	if res, _ := sget(t, s, "/live/cam1/index.m3u8"); res.StatusCode != 403 {
		t.Errorf("no token: %d", res.StatusCode)
	}
	if res, _ := sget(t, s, SteeringPath+"?stream=live%2Fcam1"); res.StatusCode != 403 {
		t.Errorf("steering without token: %d", res.StatusCode)
	}
	res, body := sget(t, s, "/live/cam1/index.m3u8?"+tok)
	if res.StatusCode != 200 || !strings.Contains(body, "main_stream.m3u8?"+tok+"\n") {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	if res, _ := sget(t, s, SteeringPath+"?stream=live%2Fcam1&"+tok+"&_HLS_pathway=own"); res.StatusCode != 200 {
		t.Errorf("steering with token: %d", res.StatusCode)
	}
}

// recMetrics counts outcomes.
type recMetrics struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *recMetrics) Redirect(_, oc string)                 { m.mu.Lock(); m.n[oc]++; m.mu.Unlock() }
func (m *recMetrics) ResolveDuration(string, time.Duration) {}

// TestSteeringCountsAndLogs: steering answers are counted by outcome and logged one line each.
func TestSteeringCountsAndLogs(t *testing.T) {
	t.Parallel()
	tb := steerTable(0.8)
	m := &recMetrics{n: map[string]int{}}
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := start(t, &Server{Resolver: tb, Steering: tb, Metrics: m, Logger: log})
	sget(t, s, "/live/cam1/index.m3u8")
	sget(t, s, SteeringPath+"?stream=live%2Fcam1&_HLS_pathway=own")
	sget(t, s, SteeringPath+"?stream=live%2Fcam1&_HLS_pathway=o3") // not a copy: moved
	sget(t, s, SteeringPath+"?stream=bad%")
	s.Close()
	m.mu.Lock()
	got := fmt.Sprint(m.n)
	m.mu.Unlock()
	if got != "map[bad_query:1 multivariant:1 steering:1 steering_move:1]" {
		t.Errorf("counted %s", got)
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	for _, want := range []string{"outcome=multivariant origin=own route=owner ", "outcome=steering origin=own", "outcome=steering_move origin=own", "outcome=bad_query"} {
		if strings.Count(out, want) != 1 {
			t.Errorf("log has %d lines with %q:\n%s", strings.Count(out, want), want, out)
		}
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

var steerQueryCases = []struct {
	q                     string
	ok                    bool
	name, pathway, viewer string
}{
	{"stream=live%2Fcam1", true, "live/cam1", "", ""},
	{"stream=cam&token=a.b-c&_HLS_pathway=o-1.x_y&_HLS_throughput=5000000", true, "cam", "o-1.x_y", "token=a.b-c"},
	{"a=1&stream=cam&stream=other&b", true, "cam", "", "a=1&stream=other&b"},
	{"stream=live%2fcam1&&x=%22", true, "live/cam1", "", "x=%22"},
	{"", false, "", "", ""},
	{"stream=", false, "", "", ""},
	{"stream=..", false, "", "", ""},
	{"stream=a%2F..%2Fb", false, "", "", ""},
	{"stream=a%2", false, "", "", ""},
	{"stream=a&_HLS_pathway=", false, "", "", ""},
	{"stream=a&_HLS_pathway=x%20y", false, "", "", ""},
	{"stream=a&_HLS_throughput=-1", false, "", "", ""},
	{"stream=a&x=#", false, "", "", ""},
	{"stream=a&x= ", false, "", "", ""},
	{"stream=a&" + strings.Repeat("x", maxSteerQuery), false, "", "", ""},
}

func TestParseSteerQuery(t *testing.T) {
	t.Parallel()
	for _, tc := range steerQueryCases {
		q, ok := parseSteerQuery(tc.q)
		if ok != tc.ok || (ok && (q.name != tc.name || q.pathway != tc.pathway || q.viewer != tc.viewer)) {
			t.Errorf("parseSteerQuery(%.60q) = %+v, %v", tc.q, q, ok)
		}
	}
}

// FuzzSteerQuery: whatever the query, an accepted one names a valid stream, a valid pathway
// or none, and a viewer query a Location may carry; the steering URI built from them reads
// back the same.
func FuzzSteerQuery(f *testing.F) {
	for _, tc := range steerQueryCases {
		f.Add(tc.q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, ok := parseSteerQuery(raw)
		if !ok {
			if q != (steerQuery{}) {
				t.Fatalf("refused %q but returned %+v", raw, q)
			}
			return
		}
		if !streamname.Valid(q.name) || (q.pathway != "" && !validPathway(q.pathway)) || !streamname.ValidQuery(q.viewer) {
			t.Fatalf("parseSteerQuery(%q) = %+v", raw, q)
		}
		u := steeringURI(q.name, q.viewer)
		_, back, _ := strings.Cut(u, "?")
		q2, ok := parseSteerQuery(back)
		if !ok || q2.name != q.name || q2.pathway != "" || q2.viewer != strings.ReplaceAll(q.viewer, `"`, "%22") {
			t.Fatalf("steering URI %q of %+v reads back %+v, %v", u, q, q2, ok)
		}
		if strings.ContainsAny(u, "\"\r\n ") {
			t.Fatalf("steering URI %q cannot sit in a quoted string", u)
		}
	})
}

// BenchmarkSteering measures the steering endpoint's answers against the plain 302 of the same
// stream, in the same run, on a real table (live/cam1 on an owner and a relay): through the
// handler (net/http's ResponseWriter, no socket) and through the real listener (one
// keep-alive connection, one request in flight). Compare ns/op: the redirect is the baseline.
func BenchmarkSteering(b *testing.B) {
	tb := steerTable(0.8)
	quiet := slog.New(slog.DiscardHandler)
	h := (&handler{res: tb, steer: tb, steerTTL: 5, log: quiet, metrics: nopMetrics{}, retryAfter: []string{"2"}}).router()
	cases := []struct {
		name, target string
		status       int
	}{
		{"redirect", "/live/cam1/main_stream.m3u8?token=abc123", http.StatusFound},
		{"steering", SteeringPath + "?stream=live%2Fcam1&token=abc123&_HLS_pathway=own&_HLS_throughput=5000000", http.StatusOK},
		{"multivariant", "/live/cam1/index.m3u8?token=abc123", http.StatusOK},
	}
	for _, bc := range cases {
		req, _ := http.NewRequest(http.MethodGet, bc.target, nil)
		req.RemoteAddr = "10.1.2.3:4567"
		b.Run("handler/"+bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w := &nullWriter{hdr: http.Header{}}
				h.ServeHTTP(w, req)
				if w.code != bc.status {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
	s := &Server{Address: "127.0.0.1:0", Resolver: tb, Steering: tb, Logger: quiet}
	if err := s.Initialize(); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, bc := range cases {
		b.Run("listener/"+bc.name, func(b *testing.B) {
			c, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			reqBytes := []byte("GET " + bc.target + " HTTP/1.1\r\nHost: gw\r\nUser-Agent: bench\r\n\r\n")
			get := &http.Request{Method: http.MethodGet}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(reqBytes); err != nil {
					b.Fatal(err)
				}
				res, err := http.ReadResponse(br, get)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != bc.status {
					b.Fatalf("status %d", res.StatusCode)
				}
			}
		})
	}
}

// nullWriter is a ResponseWriter that keeps the status only.
type nullWriter struct {
	hdr  http.Header
	code int
}

func (w *nullWriter) Header() http.Header         { return w.hdr }
func (w *nullWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nullWriter) WriteHeader(code int)        { w.code = code }

// fakeCopier answers a fixed copy list, whatever it holds.
type fakeCopier []resolve.Copy

func (f fakeCopier) Copies(req resolve.Request, dst []resolve.Copy) ([]resolve.Copy, resolve.Outcome) {
	if req.Name != steerCam {
		return dst[:0], resolve.NotFound
	}
	return append(dst[:0], f...), resolve.OK
}

// TestSteeringRefusesBadRegistryURLs: a copy whose base URL is not a bare scheme://host[:port]
// (or whose id is no pathway id) never reaches a playlist or a clone; a bad first copy is 502.
func TestSteeringRefusesBadRegistryURLs(t *testing.T) {
	t.Parallel()
	good := resolve.Copy{OriginID: "good", BaseURL: "http://good.test:8081", Scheme: "http"}
	bad := []resolve.Copy{
		{OriginID: "path", BaseURL: "http://evil.test:8081/x", Scheme: "http"},
		{OriginID: "user", BaseURL: "http://u@evil.test", Scheme: "http"},
		{OriginID: "query", BaseURL: "http://evil.test?x", Scheme: "http"},
		{OriginID: "bad id", BaseURL: "http://evil.test", Scheme: "http"},
		{OriginID: "quote", BaseURL: `http://evil.test"`, Scheme: "http"},
	}
	s := start(t, &Server{Resolver: newFake(), Steering: fakeCopier(append([]resolve.Copy{good}, bad...))})
	res, body := sget(t, s, "/live/cam1/index.m3u8")
	if res.StatusCode != 200 || strings.Contains(body, "evil") {
		t.Fatalf("%d\n%s", res.StatusCode, body)
	}
	res, body = sget(t, s, SteeringPath+"?stream=live%2Fcam1&_HLS_pathway=good")
	if res.StatusCode != 200 || strings.Contains(body, "evil") || strings.Contains(body, "bad id") {
		t.Fatalf("%d\n%s", res.StatusCode, body)
	}
	for _, b := range bad {
		s := start(t, &Server{Resolver: newFake(), Steering: fakeCopier{b, good}})
		if res, body := sget(t, s, "/live/cam1/index.m3u8"); res.StatusCode != 502 || strings.Contains(body, "evil") {
			t.Errorf("first copy %+v: %d\n%s", b, res.StatusCode, body)
		}
	}
}
