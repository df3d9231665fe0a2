package rtspgw

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
	"go.uber.org/goleak"

	"github.com/peergate/peergate/gateway/gwmetrics"
	"github.com/peergate/peergate/internal/logtest"
	"github.com/peergate/peergate/internal/poll"
	"github.com/peergate/peergate/internal/testcert"
)

// standIn is an origin for the tests: a gortsplib server that takes ANNOUNCE/RECORD and
// counts RTP packets per path, and remembers every request it was sent.
type standIn struct {
	srv *gortsplib.Server

	mu       sync.Mutex
	packets  map[string]int
	requests []*base.Request
}

func (o *standIn) OnRequest(_ *gortsplib.ServerConn, req *base.Request) {
	o.mu.Lock()
	o.requests = append(o.requests, req)
	o.mu.Unlock()
}

func (o *standIn) OnAnnounce(*gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (o *standIn) OnSetup(*gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil, nil
}

func (o *standIn) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	path := ctx.Path
	ctx.Session.OnPacketRTPAny(func(*description.Media, format.Format, *rtp.Packet) {
		o.mu.Lock()
		o.packets[path]++
		o.mu.Unlock()
	})
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (o *standIn) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.packets[path]
}

// setups returns the Transport headers of the SETUPs the origin received.
func (o *standIn) setups() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, r := range o.requests {
		if r.Method == base.Setup {
			out = append(out, strings.Join(r.Header["Transport"], ","))
		}
	}
	return out
}

func (o *standIn) base() string { return "rtsp://" + o.srv.NetListener().Addr().String() }

// newOrigin starts a stand-in origin; close it with stop (idempotent).
func newOrigin(t testing.TB, tlsConf *tls.Config) (*standIn, func()) {
	t.Helper()
	o := &standIn{packets: map[string]int{}}
	o.srv = &gortsplib.Server{Handler: o, RTSPAddress: "127.0.0.1:0", TLSConfig: tlsConf}
	if err := o.srv.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(o.srv.Close) }
	return o, stop
}

// recMetrics records relay metrics.
type recMetrics struct {
	mu                 sync.Mutex
	starts             int
	ends               []string
	toOrigin, toClient int64
}

func (m *recMetrics) Redirect(string, string)               {}
func (m *recMetrics) ResolveDuration(string, time.Duration) {}
func (m *recMetrics) RelayStart(p, role string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p == proto && role == gwmetrics.RolePublish {
		m.starts++
	}
}
func (m *recMetrics) RelayEnd(_, _, outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ends = append(m.ends, outcome)
}
func (m *recMetrics) RelayBytes(_, dir string, n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if dir == gwmetrics.ToOrigin {
		m.toOrigin += n
	} else {
		m.toClient += n
	}
}

// eventually polls cond for up to 10 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	poll.T(t, 10*time.Second, cond, "waiting for %s", what)
}

func h264Desc() (*description.Session, *description.Media) {
	medi := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}}}
	return &description.Session{Medias: []*description.Media{medi}}, medi
}

func rtpPacket(seq uint16) *rtp.Packet {
	return &rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3600, SSRC: 0x1234, Marker: true},
		Payload: []byte{0x65, 0x88, 0x84, 0x00, 0x33, 0xff},
	}
}

// A gortsplib client with its default transport publishes through the gateway: its UDP
// SETUP is answered 461 by the gateway (the origin never sees it), it retries with TCP and
// every packet reaches the origin. Metrics and the log line tell the relay's story.
func TestPublishGortsplib(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	origin, stopOrigin := newOrigin(t, nil)
	defer stopOrigin()
	m := &recMetrics{}
	logs := &logtest.Buffer{}
	gw := &Server{Address: "127.0.0.1:0", Resolver: fakeResolver{origin: origin.base()}, Metrics: m,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))}
	if err := gw.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer gw.Close()

	desc, medi := h264Desc()
	c := &gortsplib.Client{}
	if err := c.StartRecording("rtsp://"+gw.Addr().String()+"/live/cam1?token=abc", desc); err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		if err := c.WritePacketRTP(medi, rtpPacket(uint16(i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "packets at the origin", func() bool { return origin.count("/live/cam1") == n })
	c.Close()

	for _, tr := range origin.setups() {
		if !strings.Contains(tr, "TCP") {
			t.Fatalf("the origin was asked for %q", tr)
		}
	}
	if len(origin.setups()) != 1 {
		t.Fatalf("origin SETUPs %v", origin.setups())
	}
	eventually(t, "the relay's end", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.ends) == 1
	})
	m.mu.Lock()
	if m.starts != 1 || m.ends[0] != gwmetrics.OK || m.toOrigin < n*16 || m.toClient == 0 {
		t.Errorf("metrics: starts %d ends %v to_origin %d to_client %d", m.starts, m.ends, m.toOrigin, m.toClient)
	}
	m.mu.Unlock()
	var line map[string]any
	eventually(t, "the log line", func() bool {
		for _, l := range logs.Records() {
			if l["mode"] == "relay" {
				line = l
				return true
			}
		}
		return false
	})
	if line["name"] != "live/cam1" || line["origin"] != "o1" || line["outcome"] != "ok" ||
		line["udp_setups_refused"] != 1.0 || line["bytes_to_origin"].(float64) < n*16 {
		t.Fatalf("log line %v", line)
	}
}

// FFmpeg's RTSP muxer with its default transport (UDP first) publishes through the gateway:
// the gateway refuses the UDP SETUP with 461, FFmpeg retries over TCP interleaved on the same
// connection and packets arrive at the origin.
func TestPublishFFmpeg(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg not found: apt-get install -y ffmpeg")
	}
	origin, stopOrigin := newOrigin(t, nil)
	defer stopOrigin()
	logs := &logtest.Buffer{}
	gw := &Server{Address: "127.0.0.1:0", Resolver: fakeResolver{origin: origin.base()},
		Logger: slog.New(slog.NewJSONHandler(logs, nil))}
	if err := gw.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "3",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
		"-f", "rtsp", "rtsp://"+gw.Addr().String()+"/live/ff")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	eventually(t, "packets at the origin", func() bool { return origin.count("/live/ff") >= 75 })
	setups := origin.setups()
	if len(setups) != 1 || !strings.Contains(setups[0], "interleaved") {
		t.Fatalf("origin SETUPs %q", setups)
	}
	eventually(t, "the log line", func() bool {
		for _, l := range logs.Records() {
			if l["mode"] == "relay" && l["name"] == "live/ff" {
				if l["udp_setups_refused"] != 1.0 {
					t.Fatalf("log line %v", l)
				}
				return true
			}
		}
		return false
	})
}

// GStreamer's rtspclientsink (which reads OPTIONS' Public list first) publishes through the
// gateway over TCP. It needs protocols=tcp: with its default protocols, after the 461 it
// tries UDP multicast next and stops with "No supported profiles configured" (GStreamer 1.22)
// instead of going on to TCP.
func TestPublishGStreamer(t *testing.T) {
	gst, err := exec.LookPath("gst-launch-1.0")
	if err != nil || exec.Command("gst-inspect-1.0", "rtspclientsink").Run() != nil || exec.Command("gst-inspect-1.0", "x264enc").Run() != nil {
		t.Fatal("gst-launch-1.0 with rtspclientsink and x264enc is missing: apt-get install -y gstreamer1.0-tools gstreamer1.0-rtsp gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad")
	}
	origin, stopOrigin := newOrigin(t, nil)
	defer stopOrigin()
	gw := &Server{Address: "127.0.0.1:0", Resolver: fakeResolver{origin: origin.base()}, Logger: slog.New(slog.DiscardHandler)}
	if err := gw.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	// A live source the test stops once enough has arrived: how rtspclientsink winds down
	// after EOS is not what this test is about.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, gst, "-q", "videotestsrc", "is-live=true", "!",
		"video/x-raw,width=320,height=240,framerate=25/1", "!",
		"x264enc", "tune=zerolatency", "speed-preset=ultrafast", "key-int-max=25", "!", "h264parse", "!",
		"rtspclientsink", "protocols=tcp", "location=rtsp://"+gw.Addr().String()+"/live/gst")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cancel()
		<-exited
	}()
	for end := time.Now().Add(45 * time.Second); origin.count("/live/gst") < 75; time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("gst-launch ended before 75 packets reached the origin (%d): %v\n%s", origin.count("/live/gst"), err, out.String())
		default:
		}
		if time.Now().After(end) {
			t.Fatalf("only %d packets reached the origin in 45 s", origin.count("/live/gst"))
		}
	}
}

// An origin that offers only rtsps is dialled with TLS.
func TestPublishToRTSPSOrigin(t *testing.T) {
	tc := testcert.New(t)
	cert, pool := tc.TLS, tc.Pool
	origin, stopOrigin := newOrigin(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	defer stopOrigin()
	base := "rtsps://" + origin.srv.NetListener().Addr().String()
	gw := &Server{Address: "127.0.0.1:0", Resolver: fakeResolver{others: map[string]string{"live/tls": base}},
		OriginTLSConfig: &tls.Config{RootCAs: pool}, Logger: slog.New(slog.DiscardHandler)}
	if err := gw.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	desc, medi := h264Desc()
	tcp := gortsplib.ProtocolTCP
	c := &gortsplib.Client{Protocol: &tcp}
	if err := c.StartRecording("rtsp://"+gw.Addr().String()+"/live/tls", desc); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 10 {
		if err := c.WritePacketRTP(medi, rtpPacket(uint16(i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "packets at the rtsps origin", func() bool { return origin.count("/live/tls") == 10 })
}

const sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=Stream\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n" +
	"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n"

func sdpHeader() base.Header { return base.Header{"Content-Type": base.HeaderValue{"application/sdp"}} }

// rawPublisher speaks RTSP by hand, to see exactly what the gateway answers.
type rawPublisher struct {
	t    testing.TB
	c    net.Conn
	br   *bufio.Reader
	url  string
	cseq int
}

func dialRaw(t testing.TB, addr, path string) *rawPublisher {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawPublisher{t: t, c: c, br: bufio.NewReader(c), url: "rtsp://" + addr + path}
}

func (p *rawPublisher) do(method, url string, hdr base.Header, body []byte) *base.Response {
	p.t.Helper()
	p.cseq++
	if hdr == nil {
		hdr = base.Header{}
	}
	hdr["CSeq"] = base.HeaderValue{fmt.Sprint(p.cseq)}
	u, err := base.ParseURL(url)
	if err != nil {
		p.t.Fatal(err)
	}
	b, _ := (&base.Request{Method: base.Method(method), URL: u, Header: hdr, Body: body}).Marshal()
	if _, err := p.c.Write(b); err != nil {
		p.t.Fatal(err)
	}
	for {
		if peek, err := p.br.Peek(1); err == nil && peek[0] == '$' {
			var f base.InterleavedFrame
			if err := f.Unmarshal(p.br); err != nil {
				p.t.Fatal(err)
			}
			continue
		}
		var res base.Response
		if err := res.Unmarshal(p.br); err != nil {
			p.t.Fatalf("%s: %v", method, err)
		}
		return &res
	}
}

// record runs ANNOUNCE, SETUP (TCP) and RECORD and returns the session id.
func (p *rawPublisher) record() string {
	p.t.Helper()
	res := p.do("ANNOUNCE", p.url, sdpHeader(), []byte(sdp))
	if res.StatusCode != base.StatusOK {
		p.t.Fatalf("ANNOUNCE: %v", res)
	}
	res = p.do("SETUP", p.url+"/trackID=0", base.Header{"Transport": base.HeaderValue{"RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"}}, nil)
	if res.StatusCode != base.StatusOK {
		p.t.Fatalf("SETUP: %v", res)
	}
	session, _, _ := strings.Cut(res.Header["Session"][0], ";")
	if res = p.do("RECORD", p.url, base.Header{"Session": base.HeaderValue{session}}, nil); res.StatusCode != base.StatusOK {
		p.t.Fatalf("RECORD: %v", res)
	}
	return session
}

func (p *rawPublisher) frame(seq uint16) error {
	b, _ := rtpPacket(seq).Marshal()
	f, _ := (base.InterleavedFrame{Channel: 0, Payload: b}).Marshal()
	_, err := p.c.Write(f)
	return err
}

// closedWithin reports whether the server closed c within d (reading and dropping data).
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

// A table of clients, good and bad, against one gateway while a good publisher keeps
// publishing through it: each gets its answer or is cut off, the good publisher's packets
// keep arriving, and no goroutine is left behind.
func TestRelayCases(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	origin, stopOrigin := newOrigin(t, nil)
	defer stopOrigin()
	doomed, stopDoomed := newOrigin(t, nil)
	defer stopDoomed()
	gw := &Server{Address: "127.0.0.1:0", ReadTimeout: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		Resolver: fakeResolver{origin: origin.base(), others: map[string]string{"live/doomed": doomed.base()}}}
	if err := gw.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	addr := gw.Addr().String()

	// The good publisher: a frame every 10 ms (well inside the 500 ms ReadTimeout).
	good := dialRaw(t, addr, "/live/good")
	defer good.c.Close()
	good.record()
	_ = good.c.SetDeadline(time.Time{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := uint16(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if good.frame(seq) != nil {
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	eventually(t, "the good publisher's packets", func() bool { return origin.count("/live/good") > 0 })

	cases := []struct {
		desc string
		run  func(t *testing.T)
	}{
		{"options first gets the full Public list", func(t *testing.T) {
			p := dialRaw(t, addr, "/live/cam1")
			defer p.c.Close()
			res := p.do("OPTIONS", p.url, nil, nil)
			if res.StatusCode != base.StatusOK || len(res.Header["Public"]) != 1 || res.Header["Public"][0] != fullPublic {
				t.Fatalf("%v", res)
			}
			if res = p.do("DESCRIBE", p.url, nil, nil); res.StatusCode != base.StatusFound {
				t.Fatalf("DESCRIBE after OPTIONS: %v", res)
			}
		}},
		{"straight to describe gets 302", func(t *testing.T) {
			p := dialRaw(t, addr, "/live/cam1")
			defer p.c.Close()
			res := p.do("DESCRIBE", p.url, nil, nil)
			if res.StatusCode != base.StatusFound || res.Header["Location"][0] != registered+"live/cam1" {
				t.Fatalf("%v", res)
			}
		}},
		{"unknown name gets 404", func(t *testing.T) {
			p := dialRaw(t, addr, "/live/none")
			defer p.c.Close()
			if res := p.do("ANNOUNCE", p.url, sdpHeader(), []byte(sdp)); res.StatusCode != base.StatusNotFound {
				t.Fatalf("%v", res)
			}
		}},
		{"nobody eligible gets 503 and Retry-After", func(t *testing.T) {
			p := dialRaw(t, addr, "/busy")
			defer p.c.Close()
			res := p.do("ANNOUNCE", p.url, sdpHeader(), []byte(sdp))
			if res.StatusCode != base.StatusServiceUnavailable || len(res.Header["Retry-After"]) != 1 {
				t.Fatalf("%v", res)
			}
		}},
		{"origin unreachable gets 502 and a closed connection", func(t *testing.T) {
			p := dialRaw(t, addr, "/dead")
			defer p.c.Close()
			if res := p.do("ANNOUNCE", p.url, sdpHeader(), []byte(sdp)); res.StatusCode != base.StatusBadGateway {
				t.Fatalf("%v", res)
			}
			if !closedWithin(p.c, 5*time.Second) {
				t.Fatal("still open")
			}
		}},
		{"a 64 kB request line gets 400 or a close", func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			go io.WriteString(c, "ANNOUNCE rtsp://"+addr+"/"+strings.Repeat("a", 64<<10)+" RTSP/1.0\r\nCSeq: 1\r\n\r\n")
			all, _ := io.ReadAll(c)
			if len(all) > 0 && !strings.HasPrefix(string(all), "RTSP/1.0 400") {
				t.Fatalf("answer %q", all)
			}
		}},
		{"a request never finished is cut after ReadTimeout", func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "ANNOUNCE rtsp://"+addr+"/live/slow RTSP/1.0\r\nCSeq: 1\r\n")
			if !closedWithin(c, 5*time.Second) {
				t.Fatal("not cut off")
			}
		}},
		{"a publisher silent past ReadTimeout is cut", func(t *testing.T) {
			p := dialRaw(t, addr, "/live/silent")
			defer p.c.Close()
			p.record()
			if !closedWithin(p.c, 5*time.Second) {
				t.Fatal("not cut off")
			}
		}},
		{"a UDP SETUP gets 461 from the gateway", func(t *testing.T) {
			p := dialRaw(t, addr, "/live/udp")
			defer p.c.Close()
			if res := p.do("ANNOUNCE", p.url, sdpHeader(), []byte(sdp)); res.StatusCode != base.StatusOK {
				t.Fatalf("ANNOUNCE: %v", res)
			}
			res := p.do("SETUP", p.url+"/trackID=0", base.Header{"Transport": base.HeaderValue{"RTP/AVP;unicast;client_port=5000-5001;mode=record"}}, nil)
			if res.StatusCode != base.StatusUnsupportedTransport {
				t.Fatalf("%v", res)
			}
			for _, tr := range origin.setups() {
				if strings.Contains(tr, "client_port=5000") {
					t.Fatal("the origin saw the UDP SETUP")
				}
			}
		}},
		{"a request for another name inside a relay gets 400", func(t *testing.T) {
			p := dialRaw(t, addr, "/live/one")
			defer p.c.Close()
			if res := p.do("ANNOUNCE", p.url, sdpHeader(), []byte(sdp)); res.StatusCode != base.StatusOK {
				t.Fatalf("ANNOUNCE: %v", res)
			}
			if res := p.do("ANNOUNCE", "rtsp://"+addr+"/live/other", sdpHeader(), []byte(sdp)); res.StatusCode != base.StatusBadRequest {
				t.Fatalf("%v", res)
			}
		}},
		{"garbage mid-relay gets 400 and a close", func(t *testing.T) {
			p := dialRaw(t, addr, "/live/garbage")
			defer p.c.Close()
			p.record()
			p.c.Write([]byte("NOT RTSP AT ALL\r\n\r\n"))
			if !closedWithin(p.c, 5*time.Second) {
				t.Fatal("still open")
			}
		}},
		{"an origin that dies mid-publish closes the client", func(t *testing.T) {
			p := dialRaw(t, addr, "/live/doomed")
			defer p.c.Close()
			p.record()
			for i := range 5 {
				if err := p.frame(uint16(i)); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, "packets at the doomed origin", func() bool { return doomed.count("/live/doomed") == 5 })
			stopDoomed()
			if !closedWithin(p.c, 5*time.Second) {
				t.Fatal("the client's connection stayed open")
			}
		}},
	}
	for _, c := range cases {
		before := origin.count("/live/good")
		t.Run(c.desc, c.run)
		eventually(t, "the good publisher still publishing", func() bool { return origin.count("/live/good") > before+5 })
	}
}

// rawOrigin answers the first request 200 and then either floods the client with frames
// while dropping what it is sent, or stops reading (stall) until it is closed.
func rawOrigin(t *testing.T, flood bool) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var r base.Request
		if r.Unmarshal(br) != nil {
			return
		}
		io.WriteString(c, "RTSP/1.0 200 OK\r\nCSeq: "+r.Header["CSeq"][0]+"\r\n\r\n")
		if flood {
			go func() { <-done; c.Close() }()
			go io.Copy(io.Discard, br)
			big := []byte(frame(1, 0xffff))
			for {
				if _, err := c.Write(big); err != nil {
					return
				}
			}
		}
		<-done
	}()
	return "rtsp://" + ln.Addr().String(), func() { close(done); ln.Close(); wg.Wait() }
}

// A side that stops reading is cut after WriteTimeout: an origin that takes no more bytes
// from a publisher, and a publisher that reads nothing while its origin talks.
func TestStalledSideIsCut(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, c := range []struct {
		desc        string
		flood       bool
		wantOutcome string
	}{
		{"origin stops reading", false, gwmetrics.OriginFailed},
		{"client stops reading", true, gwmetrics.ClientGone},
	} {
		t.Run(c.desc, func(t *testing.T) {
			originBase, stopOrigin := rawOrigin(t, c.flood)
			defer stopOrigin()
			m := &recMetrics{}
			gw := &Server{Address: "127.0.0.1:0", WriteTimeout: 300 * time.Millisecond, ReadTimeout: time.Minute, Metrics: m,
				Resolver: fakeResolver{origin: originBase}, Logger: slog.New(slog.DiscardHandler)}
			if err := gw.Initialize(); err != nil {
				t.Fatal(err)
			}
			defer gw.Close()
			p := dialRaw(t, gw.Addr().String(), "/live/stall")
			defer p.c.Close()
			if res := p.do("ANNOUNCE", p.url, sdpHeader(), []byte(sdp)); res.StatusCode != base.StatusOK {
				t.Fatalf("ANNOUNCE: %v", res)
			}
			if !c.flood {
				// Write big frames until the gateway cuts the connection.
				_ = p.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				big := []byte(frame(0, 0xffff))
				for {
					if _, err := p.c.Write(big); err != nil {
						break
					}
				}
			}
			eventually(t, "the relay's end", func() bool {
				m.mu.Lock()
				defer m.mu.Unlock()
				return len(m.ends) == 1
			})
			m.mu.Lock()
			outcome := m.ends[0]
			m.mu.Unlock()
			if outcome != c.wantOutcome {
				t.Fatalf("outcome %q, want %q", outcome, c.wantOutcome)
			}
			if !closedWithin(p.c, 5*time.Second) {
				t.Fatal("the publisher's connection stayed open")
			}
		})
	}
}

// Close during a relay closes both sides and returns with nothing left running.
func TestCloseDuringRelay(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	origin, stopOrigin := newOrigin(t, nil)
	defer stopOrigin()
	gw := &Server{Address: "127.0.0.1:0", Resolver: fakeResolver{origin: origin.base()}, Logger: slog.New(slog.DiscardHandler)}
	if err := gw.Initialize(); err != nil {
		t.Fatal(err)
	}
	p := dialRaw(t, gw.Addr().String(), "/live/closing")
	defer p.c.Close()
	p.record()
	closed := make(chan struct{})
	go func() { gw.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if !closedWithin(p.c, 5*time.Second) {
		t.Fatal("the publisher's connection stayed open")
	}
}
