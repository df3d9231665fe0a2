package rtmpgw

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/amf0"
	"go.uber.org/goleak"

	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/internal/logtest"
)

// TestRelayPlay: gortmplib's Client plays through the gateway in relay mode and decodes the
// stand-in origin's H.264 frames; the origin saw the same app, stream key and query.
func TestRelayPlay(t *testing.T) {
	o := startStandIn(t)
	m := newFakeMetrics()
	gw := startGateway(t, &Server{Resolver: &fakeResolver{base: o.base()}, Mode: ModeRelay, Metrics: m})
	if err := playFrames("rtmp://"+gw.Addr().String()+"/live/cam1?token=abc", 10); err != nil {
		t.Fatal(err)
	}
	if got := o.lastURL.Load().(string); got != o.base()+"/live/cam1?token=abc" {
		t.Errorf("origin saw %q", got)
	}
	if !eventually(5*time.Second, func() bool { return m.relayEnd("play/ok") == 1 }) {
		t.Errorf("relay ends: %v", m.relayEnds)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bytes["to_client"] < 10*2000 || m.bytes["to_origin"] == 0 || m.active != 0 {
		t.Errorf("bytes %v active %d", m.bytes, m.active)
	}
}

// TestRelayPublish: gortmplib's Client publishes through the gateway; every frame arrives at
// the origin the resolver's Place chose.
func TestRelayPublish(t *testing.T) {
	o := startStandIn(t)
	res := &fakeResolver{base: o.base()}
	m := newFakeMetrics()
	gw := startGateway(t, &Server{Resolver: res, Metrics: m})
	if err := publishFrames("rtmp://"+gw.Addr().String()+"/live/pub", 100); err != nil {
		t.Fatal(err)
	}
	if !eventually(5*time.Second, func() bool { return o.received.Load() >= 100 }) {
		t.Errorf("origin received %d frames, want all 100 (gortmplib's reader may count the first twice)", o.received.Load())
	}
	if res.placed.Load() != 1 || res.resolved.Load() != 0 {
		t.Errorf("placed %d resolved %d: a publisher must be placed", res.placed.Load(), res.resolved.Load())
	}
	if !eventually(5*time.Second, func() bool { return m.relayEnd("publish/ok") == 1 }) {
		t.Errorf("relay ends: %v", m.relayEnds)
	}
}

// TestStaticApp: rtmp://gw/static/demo is NAME "demo", and the origin is asked for the same
// static/demo URL (the origin follows the same rule).
func TestStaticApp(t *testing.T) {
	o := startStandIn(t)
	var names []string
	var mu sync.Mutex
	res := &recordingResolver{fakeResolver: fakeResolver{base: o.base()}, names: &names, mu: &mu}
	gw := startGateway(t, &Server{Resolver: res, Mode: ModeRelay})
	if err := playFrames("rtmp://"+gw.Addr().String()+"/static/demo", 3); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(names) != 1 || names[0] != "demo" {
		t.Errorf("resolver asked for %q, want [demo]", names)
	}
	if got := o.lastURL.Load().(string); got != o.base()+"/static/demo" {
		t.Errorf("origin saw %q", got)
	}
}

type recordingResolver struct {
	fakeResolver
	mu    *sync.Mutex
	names *[]string
}

func (r *recordingResolver) Resolve(req resolve.Request) resolve.Result {
	r.mu.Lock()
	*r.names = append(*r.names, req.Name)
	r.mu.Unlock()
	return r.fakeResolver.Resolve(req)
}

// TestAutoMode: in auto mode a client that sets the reconnect bit of capsEx (or whose flashVer
// matches FollowFlashVer) is redirected, one without is relayed.
func TestAutoMode(t *testing.T) {
	o := startStandIn(t)
	m := newFakeMetrics()
	gw := startGateway(t, &Server{Resolver: &fakeResolver{base: o.base()}, FollowFlashVer: []string{"SRS/*"}, Metrics: m})
	addr := gw.Addr().String()
	for _, c := range []struct {
		capsEx   float64
		flashVer string
		want     string
	}{
		{1, "FMLE/3.0", codeReconnect},
		{3, "FMLE/3.0", codeReconnect},
		{-1, "SRS/4.0.1(Leo)", codeRejected},
		{2, "FMLE/3.0", ""},
		{-1, "LNX 9,0,124,2", ""},
	} {
		rc := dialRaw(t, addr)
		if err := rc.connectAndPlay("live", "rtmp://"+addr+"/live", c.capsEx, c.flashVer, "play", "cam1"); err != nil {
			t.Fatal(err)
		}
		_, d, err := rc.nextCommand()
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		code := ""
		if d[0] == "onStatus" {
			info, _ := d[3].(amf0.Object)
			code, _ = info.GetString("code")
		}
		if c.want != "" && code != c.want {
			t.Errorf("%+v: got %v, want %s", c, d, c.want)
		}
		if c.want == "" && code != "" && code != "NetStream.Play.Reset" && code != "NetStream.Play.Start" {
			t.Errorf("%+v: got %v, want a relayed play", c, d)
		}
		rc.conn.Close()
	}
	if err := playFrames("rtmp://"+addr+"/live/cam1", 3); err != nil {
		t.Errorf("gortmplib client (no capsEx) not relayed: %v", err)
	}
	// The raw clients hang up as soon as they have seen the play answer, so their relays end
	// as ok or client_gone depending on who closes first; the gortmplib one ends ok.
	if !eventually(5*time.Second, func() bool {
		ok, gone := m.relayEnd("play/ok"), m.relayEnd("play/client_gone")
		return ok >= 1 && ok+gone == 3 && m.redirect(OutcomeOK) == 3
	}) {
		t.Errorf("relays %v redirects %v", m.relayEnds, m.redirects)
	}
}

// TestRedirectWire decodes the redirect messages byte for byte (design.md section 5): onStatus,
// transaction 0, message stream 0; the SRS form with ex.code 302, and ReconnectRequest first
// for a client that set the reconnect bit. The app's token stays on the tcUrl, the stream's
// on redirect2.
func TestRedirectWire(t *testing.T) {
	const base = "rtmp://origin.example:1936"
	gw := startGateway(t, &Server{Resolver: &fakeResolver{base: base}, Mode: ModeRedirect})
	addr := gw.Addr().String()
	reconnect := amf0.Data{"onStatus", float64(0), nil, amf0.Object{
		{Key: "level", Value: "status"},
		{Key: "code", Value: "NetConnection.Connect.ReconnectRequest"},
		{Key: "description", Value: "reconnect to rtmp://origin.example:1936/live?key=k"},
		{Key: "tcUrl", Value: "rtmp://origin.example:1936/live?key=k"},
	}}
	srs := amf0.Data{"onStatus", float64(0), nil, amf0.Object{
		{Key: "level", Value: "error"},
		{Key: "code", Value: "NetConnection.Connect.Rejected"},
		{Key: "description", Value: "RTMP 302 Redirect"},
		{Key: "ex", Value: amf0.Object{
			{Key: "code", Value: float64(302)},
			{Key: "redirect", Value: "rtmp://origin.example:1936/live?key=k"},
			{Key: "redirect2", Value: "rtmp://origin.example:1936/live/cam1?key=k&token=t"},
		}},
	}}
	for _, c := range []struct {
		capsEx float64
		want   []amf0.Data
	}{
		{1, []amf0.Data{reconnect, srs}},
		{-1, []amf0.Data{srs}},
	} {
		rc := dialRaw(t, addr)
		if err := rc.connectAndPlay("live?key=k", "rtmp://"+addr+"/live?key=k", c.capsEx, "FMLE/3.0", "play", "cam1?token=t"); err != nil {
			t.Fatal(err)
		}
		for i, want := range c.want {
			m, d, err := rc.nextCommand()
			if err != nil {
				t.Fatalf("capsEx %v message %d: %v", c.capsEx, i, err)
			}
			wantBody, _ := want.Marshal()
			if m.MessageStreamID != 0 || !bytes.Equal(m.Body, wantBody) {
				t.Errorf("capsEx %v message %d: stream %d\n got %#v\nwant %#v", c.capsEx, i, m.MessageStreamID, d, want)
			}
			if !reflect.DeepEqual(d, want) {
				t.Errorf("capsEx %v message %d decodes to %#v", c.capsEx, i, d)
			}
		}
		if err := closedWithin(rc.conn, 5*time.Second); err != nil {
			t.Errorf("capsEx %v: gateway did not close after the redirect", c.capsEx)
		}
	}
}

// TestFollowReconnect: a client that sets the reconnect bit reads ReconnectRequest, then
// gortmplib's Client plays from the tcUrl it got, straight from the origin.
func TestFollowReconnect(t *testing.T) {
	o := startStandIn(t)
	gw := startGateway(t, &Server{Resolver: &fakeResolver{base: o.base()}})
	addr := gw.Addr().String()
	rc := dialRaw(t, addr)
	if err := rc.connectAndPlay("static", "rtmp://"+addr+"/static", 1, "FMLE/3.0", "play", "demo"); err != nil {
		t.Fatal(err)
	}
	_, d, err := rc.nextCommand()
	if err != nil {
		t.Fatal(err)
	}
	info, _ := d[3].(amf0.Object)
	code, _ := info.GetString("code")
	tcURL, _ := info.GetString("tcUrl")
	if code != codeReconnect || tcURL != o.base()+"/static" {
		t.Fatalf("got %v", d)
	}
	rc.conn.Close()
	if err := playFrames(tcURL+"/demo", 5); err != nil {
		t.Fatal(err)
	}
	if o.sessions.Load() != 1 || o.lastURL.Load().(string) != o.base()+"/static/demo" {
		t.Errorf("origin sessions %d last %q", o.sessions.Load(), o.lastURL.Load())
	}
}

// TestStatusErrors: unknown names, nobody eligible and invalid names get the onStatus error
// each client understands, then the connection is closed.
func TestStatusErrors(t *testing.T) {
	res := &fakeResolver{base: "rtmp://127.0.0.1:1", outcomes: map[string]resolve.Outcome{
		"live/gone": resolve.NotFound, "live/busy": resolve.Unavailable,
	}}
	m := newFakeMetrics()
	gw := startGateway(t, &Server{Resolver: res, Metrics: m})
	addr := gw.Addr().String()
	for _, c := range []struct {
		verb, app, stream string
		code, outcome     string
	}{
		{"play", "live", "gone", "NetStream.Play.StreamNotFound", OutcomeNotFound},
		{"play", "live", "busy", "NetStream.Play.Failed", OutcomeUnavailable},
		{"publish", "live", "busy", "NetStream.Publish.Failed", OutcomeUnavailable},
		{"publish", "live", "gone", "NetStream.Publish.Failed", OutcomeUnavailable},
		{"play", "live", "..", "NetStream.Play.StreamNotFound", OutcomeBadPath},
		{"publish", "live", "a b", "NetStream.Publish.BadName", OutcomeBadPath},
		{"play", "live", "x?a\x01", "NetStream.Play.StreamNotFound", OutcomeBadPath},
		{"play", "live", "cam1", "NetStream.Play.Failed", OutcomeOriginFailed}, // origin refuses the connection
	} {
		rc := dialRaw(t, addr)
		if err := rc.connectAndPlay(c.app, "rtmp://"+addr+"/"+c.app, -1, "FMLE/3.0", c.verb, c.stream); err != nil {
			t.Fatal(err)
		}
		m, d, err := rc.nextCommand()
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		info, _ := d[3].(amf0.Object)
		code, _ := info.GetString("code")
		level, _ := info.GetString("level")
		desc, _ := info.GetString("description")
		if d[0] != "onStatus" || code != c.code || level != "error" || m.MessageStreamID != wireID(1) {
			t.Errorf("%+v: got %v on stream %d", c, d, m.MessageStreamID)
		}
		if strings.HasSuffix(c.code, "Failed") && !strings.Contains(desc, "retry") {
			t.Errorf("%+v: description %q does not say retry", c, desc)
		}
		if err := closedWithin(rc.conn, 5*time.Second); err != nil {
			t.Errorf("%+v: not closed", c)
		}
	}
	if !eventually(5*time.Second, func() bool {
		return m.redirect(OutcomeNotFound) == 1 && m.redirect(OutcomeUnavailable) == 3 && m.redirect(OutcomeBadPath) == 3 && m.relayEnd("play/origin_failed") == 1
	}) {
		t.Errorf("redirects %v relays %v", m.redirects, m.relayEnds)
	}
}

// panicResolver panics for one name.
type panicResolver struct{ fakeResolver }

func (p *panicResolver) Resolve(req resolve.Request) resolve.Result {
	if req.Name == "live/boom" {
		panic("boom")
	}
	return p.fakeResolver.Resolve(req)
}

// TestPanicCostsOneConnection: a panic while serving one client closes that client only.
func TestPanicCostsOneConnection(t *testing.T) {
	o := startStandIn(t)
	gw := startGateway(t, &Server{Resolver: &panicResolver{fakeResolver{base: o.base()}}, Mode: ModeRelay})
	addr := gw.Addr().String()
	rc := dialRaw(t, addr)
	if err := rc.connectAndPlay("live", "rtmp://"+addr+"/live", -1, "x", "play", "boom"); err != nil {
		t.Fatal(err)
	}
	if err := closedWithin(rc.conn, 5*time.Second); err != nil {
		t.Error("panicking connection not closed")
	}
	if err := playFrames("rtmp://"+addr+"/live/ok", 3); err != nil {
		t.Errorf("server stopped serving after a panic: %v", err)
	}
}

// TestConnectionCap: a connection over MaxConns is closed at once and counted as refused.
func TestConnectionCap(t *testing.T) {
	m := newFakeMetrics()
	gw := startGateway(t, &Server{Resolver: &fakeResolver{base: "rtmp://127.0.0.1:1"}, MaxConns: 1, Metrics: m})
	first, err := net.Dial("tcp", gw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// C0 only: a talking client is never evicted to make room (netcap.EvictSilentAfter).
	if _, err := first.Write([]byte{3}); err != nil {
		t.Fatal(err)
	}
	second, err := net.Dial("tcp", gw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := closedWithin(second, 5*time.Second); err != nil {
		t.Error("second connection not closed")
	}
	if m.redirect(OutcomeRefused) != 1 {
		t.Errorf("redirects %v", m.redirects)
	}
}

// hostileCases are the inputs a gateway must survive. seed is what the client sends on the
// wire (the transcript up to play/publish for the cases that need a relay first); the seeds
// also seed FuzzSession.
var hostileCases = []struct {
	name  string
	seed  []byte
	send  func(t *testing.T, addr string, seed []byte) net.Conn // returns the connection to watch
	stall bool                                                  // read nothing until the gateway gave up
}{
	{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), dialSend, false},
	{"garbage after C0", append([]byte{3}, bytes.Repeat([]byte{0xff}, 4000)...), dialSend, false},
	{"truncated handshake", append([]byte{3}, make([]byte, 700)...), dialSend, false},
	{"RTMPE handshake", append([]byte{6}, make([]byte, 1536)...), dialSend, false},
	{"20 MB message before connect", hugeHeader(clientBytes()), func(t *testing.T, addr string, seed []byte) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		go func() {
			if _, err := c.Write(seed); err == nil {
				writeZeros(c, 20<<20)
			}
		}()
		return c
	}, false},
	{"20 MB message mid-relay", hugeHeader(clientBytes(connectCmd("live", 0), amf0.Data{"createStream", float64(2), nil},
		amf0.Data{"publish", float64(3), nil, "huge", "live"})), func(t *testing.T, addr string, seed []byte) net.Conn {
		rc := dialRaw(t, addr)
		if err := rc.connectAndPlay("live", "rtmp://"+addr+"/live", -1, "FMLE/3.0", "publish", "huge"); err != nil {
			t.Fatal(err)
		}
		go func() {
			if _, err := rc.conn.Write(hugeHeader(nil)); err == nil {
				writeZeros(rc.conn, 20<<20)
			}
		}()
		return rc.conn
	}, false},
	{"client stalls mid-relay", clientBytes(connectCmd("live", 0), amf0.Data{"createStream", float64(2), nil},
		amf0.Data{"play", float64(3), nil, "flood"}), func(t *testing.T, addr string, seed []byte) net.Conn {
		rc := dialRaw(t, addr)
		if err := rc.connectAndPlay("live", "rtmp://"+addr+"/live", -1, "FMLE/3.0", "play", "flood"); err != nil {
			t.Fatal(err)
		}
		// Read nothing more: the origin floods, the gateway's write deadline must cut us.
		return rc.conn
	}, true},
	{"origin dies mid-relay", clientBytes(connectCmd("live", 0), amf0.Data{"createStream", float64(2), nil},
		amf0.Data{"play", float64(3), nil, "die"}), func(t *testing.T, addr string, seed []byte) net.Conn {
		rc := dialRaw(t, addr)
		if err := rc.connectAndPlay("live", "rtmp://"+addr+"/live", -1, "FMLE/3.0", "play", "die"); err != nil {
			t.Fatal(err)
		}
		return rc.conn
	}, false},
}

// hugeHeader appends the start of one message that announces 16 MiB (the 24-bit length field
// cannot say 20 MB): chunk type 0 on chunk stream 4, video, message stream 1.
func hugeHeader(b []byte) []byte {
	return append(b, 0x04, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0)
}

func writeZeros(c net.Conn, n int) {
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1<<20)
	for ; n > 0; n -= len(buf) {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

func dialSend(t *testing.T, addr string, b []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go c.Write(b) //nolint:errcheck // the gateway may close before reading it all
	return c
}

// TestHostileInputs: each hostile input gets its connection closed while a concurrent good
// player keeps playing, and nothing leaks once the gateway is closed.
func TestHostileInputs(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	o := startStandIn(t)
	m := newFakeMetrics()
	gw := &Server{Address: "127.0.0.1:0", Resolver: &fakeResolver{base: o.base()}, Mode: ModeRelay, Metrics: m,
		HandshakeTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 500 * time.Millisecond}
	if err := gw.Initialize(); err != nil {
		t.Fatal(err)
	}
	addr := gw.Addr().String()
	for _, c := range hostileCases {
		t.Run(c.name, func(t *testing.T) {
			good := make(chan error, 1)
			go func() { good <- playFrames("rtmp://"+addr+"/live/good", 20) }()
			conn := c.send(t, addr, c.seed)
			if c.stall && !eventually(10*time.Second, func() bool { return m.relayEnd("play/client_gone") == 1 }) {
				t.Errorf("%s: stalled client not cut", c.name)
			}
			if err := closedWithin(conn, 10*time.Second); err != nil {
				t.Errorf("%s: connection still open", c.name)
			}
			select {
			case err := <-good:
				if err != nil {
					t.Errorf("concurrent good client: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("concurrent good client hung")
			}
		})
	}
	if !eventually(5*time.Second, func() bool {
		return m.relayEnd("play/client_gone") == 1 && m.relayEnd("play/origin_failed") == 1 && m.relayEnd("publish/bad_request") == 1
	}) {
		t.Errorf("relay ends %v", m.relayEnds)
	}
	gw.Close()
	o.close()
}

func ExampleServer() {
	s := &Server{Address: "127.0.0.1:0", Resolver: &fakeResolver{base: "rtmp://origin.example:1936"}}
	if err := s.Initialize(); err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	fmt.Println(s.Mode)
	// Output: auto
}

// TestLogLine: one line per connection with client, flashVer, capsEx, role, name, mode,
// origin, outcome, bytes each way and duration.
func TestLogLine(t *testing.T) {
	o := startStandIn(t)
	var buf logtest.Buffer
	gw := startGateway(t, &Server{Resolver: &fakeResolver{base: o.base()}, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	if err := playFrames("rtmp://"+gw.Addr().String()+"/live/cam1", 3); err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if !eventually(5*time.Second, func() bool {
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		return len(lines) == 1 && json.Unmarshal([]byte(lines[0]), &line) == nil
	}) {
		t.Fatalf("log: %s", buf.String())
	}
	for k, v := range map[string]any{"msg": "rtmp connection", "client": "127.0.0.1", "flashver": "LNX 9,0,124,2",
		"capsex": float64(0), "role": "play", "name": "live/cam1", "mode": "relay", "origin": "o1", "route": "owner", "outcome": "ok"} {
		if line[k] != v {
			t.Errorf("%s = %v, want %v", k, line[k], v)
		}
	}
	if line["bytes_to_client"].(float64) < 3*2000 || line["bytes_to_origin"].(float64) <= 0 || line["duration"] == "" {
		t.Errorf("line %v", line)
	}
}

// TestFirstRequestTimeout: a client that connects and sends nothing is closed after
// FirstRequestTimeout, not HandshakeTimeout; one over MaxConnsPerIP is refused at once.
func TestFirstRequestTimeout(t *testing.T) {
	m := newFakeMetrics()
	gw := startGateway(t, &Server{Resolver: &fakeResolver{base: "rtmp://127.0.0.1:1"}, FirstRequestTimeout: time.Second,
		HandshakeTimeout: time.Minute, MaxConnsPerIP: 1, Metrics: m})
	idle, err := net.Dial("tcp", gw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	over, err := net.Dial("tcp", gw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if err := closedWithin(over, 5*time.Second); err != nil {
		t.Errorf("connection over MaxConnsPerIP: %v", err)
	}
	// Well before HandshakeTimeout (a minute).
	if err := closedWithin(idle, 20*time.Second); err != nil {
		t.Fatalf("silent connection: %v", err)
	}
	if m.redirect(OutcomeRefusedPerIP) != 1 {
		t.Errorf("redirects %v", m.redirects)
	}
}
