package rtspsrv

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
)

func startServer(t *testing.T, tbl *media.Table) (*Server, string) {
	t.Helper()
	s := &Server{Address: "127.0.0.1:0", UDPRTPAddress: "127.0.0.1:0", Table: tbl, MaxRequestBytes: 16 << 10}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, "rtsp://" + s.Addr().String()
}

func checkProbe(t *testing.T, url, transport string) {
	t.Helper()
	// 60 s: readers and publishers share a loaded machine with the race detector.
	p, err := mediatest.ProbeStream(context.Background(), url, mediatest.ReadOptions{RTSPTransport: transport, Frames: 50, Timeout: 60 * time.Second})
	if err != nil {
		t.Errorf("%s over %s: %v", url, transport, err)
		return
	}
	if p.VideoCodec != "h264" || p.Width != 640 || p.Height != 360 || p.Frames < 50 {
		t.Errorf("%s over %s: got %+v, want h264 640x360 >= 50 frames", url, transport, p)
	}
	if p.Corrupt() {
		t.Errorf("%s over %s: damaged pictures: %s", url, transport, p.Log)
	}
}

// TestPublishPlayAndRefusals: ffmpeg records over TCP and UDP; ffprobe plays over TCP and UDP;
// a second publisher on a live NAME gets 409; unknown NAMEs get 404.
func TestPublishPlayAndRefusals(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	srv, base := startServer(t, tbl)

	pubTCP := mediatest.PublishRTSP(t, base+"/live/cam1", "tcp", mediatest.Source{})
	pubUDP := mediatest.PublishRTSP(t, base+"/live/cam2", "udp", mediatest.Source{})
	mediatest.WaitLive(t, tbl, "live/cam1", pubTCP)
	mediatest.WaitLive(t, tbl, "live/cam2", pubUDP)

	var wg sync.WaitGroup
	for _, c := range []struct{ name, tr string }{
		{"live/cam1", "tcp"}, {"live/cam1", "udp"}, {"live/cam2", "tcp"},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			checkProbe(t, base+"/"+c.name, c.tr)
		}()
	}

	// The first publisher keeps the NAME.
	second := mediatest.PublishRTSP(t, base+"/live/cam1", "tcp", mediatest.Source{Duration: 5 * time.Second})
	err, exited := second.Wait(30 * time.Second)
	if !exited || err == nil || !strings.Contains(second.Output(), "409") {
		t.Errorf("second publisher: exited=%v err=%v output=%q, want a 409 refusal", exited, err, second.Output())
	}
	t.Logf("second publisher was told: %s", strings.TrimSpace(second.Output()))

	// Unknown names: 404 on DESCRIBE.
	_, err = mediatest.ProbeStream(context.Background(), base+"/live/nope", mediatest.ReadOptions{RTSPTransport: "tcp", Timeout: 30 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown name: %v, want 404", err)
	}
	wg.Wait()

	st := tbl.Stats()
	if st.Streams != 2 {
		t.Errorf("streams %d", st.Streams)
	}
	var rtspBytes int64
	for _, p := range st.Protocols {
		if p.Protocol == media.ProtoRTSP {
			rtspBytes = p.EgressBytes
		}
	}
	if rtspBytes == 0 {
		t.Errorf("no RTSP egress counted: %+v", st)
	}

	// The publisher leaving ends the stream and frees the NAME.
	pubTCP.Stop()
	if !mediatest.Eventually(10*time.Second, func() bool { return !tbl.Live("live/cam1") }) {
		t.Error("live/cam1 still live after its publisher left")
	}
	_ = srv
}

// TestBadInputCutOff: an oversized request, garbage and a connection flood are cut off while
// another stream keeps playing.
func TestBadInputCutOff(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s := &Server{Address: "127.0.0.1:0", Table: tbl, MaxRequestBytes: 16 << 10, MaxConns: 8}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "rtsp://" + s.Addr().String()
	pub := mediatest.PublishRTSP(t, base+"/live/good", "tcp", mediatest.Source{})
	mediatest.WaitLive(t, tbl, "live/good", pub)

	// Oversized request: headers beyond 16 KiB, never finished.
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = fmt.Fprintf(c, "OPTIONS %s/live/good RTSP/1.0\r\nCSeq: 1\r\n", base)
	pad := "X-Pad: " + strings.Repeat("a", 1000) + "\r\n"
	start := time.Now()
	for i := 0; i < 100; i++ {
		if _, err := c.Write([]byte(pad)); err != nil {
			break // the server already hung up
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil && !isReset(err) {
		t.Fatalf("oversized request: connection not closed: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("oversized request: not cut off within 5 s")
	}

	// Garbage instead of RTSP.
	g, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	_, _ = g.Write(append([]byte("\x00\x01\x02garbage\r\n\r\n"), make([]byte, 200)...))
	_ = g.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(g); err != nil && !isReset(err) {
		t.Fatalf("garbage: connection not closed: %v", err)
	}

	// Connection flood beyond MaxConns: extra connections are closed at once.
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := 0; i < 8; i++ {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	last := idle[len(idle)-1]
	_ = last.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := last.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection over the cap was served")
	}
	for _, c := range idle {
		c.Close()
	}
	idle = nil

	// The good stream still plays.
	if !mediatest.Eventually(5*time.Second, func() bool { return s.ln.Active() <= 2 }) {
		t.Fatalf("connections not released: %d", s.ln.Active())
	}
	checkProbe(t, base+"/live/good", "tcp")
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "broken pipe")
}

// TestH265AndOpus: H.265 video and Opus audio published over RTSP play back over RTSP.
func TestH265AndOpus(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	_, base := startServer(t, tbl)
	pub := mediatest.PublishRTSP(t, base+"/live/hevc", "tcp", mediatest.Source{Video: "libx265", Audio: "libopus"})
	mediatest.WaitLive(t, tbl, "live/hevc", pub)
	if m := tbl.Get("live/hevc").Meta(); !strings.HasPrefix(m.Codecs, "hvc1.") || !strings.HasSuffix(m.Codecs, ",opus") || m.Width != 640 {
		t.Errorf("meta %+v", m)
	}
	// libx265 is slow on a loaded machine (ffprobe's 20 s ran out for 100 packets in 3 of 3
	// runs beside a CPU hog): 25 frames (50 packets, at least 26 decodable after joining
	// mid-GOP) within a generous 60 s.
	p, err := mediatest.ProbeStream(context.Background(), base+"/live/hevc", mediatest.ReadOptions{RTSPTransport: "tcp", Frames: 25, Timeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if p.VideoCodec != "hevc" || p.Width != 640 || p.Height != 360 || p.Frames < 25 {
		t.Errorf("got %+v, want hevc 640x360 >= 25 frames", p)
	}
}

// TestStalledPublisherCutOff: a publisher that records over TCP and then sends nothing is cut
// off after ReadTimeout and its NAME freed.
func TestStalledPublisherCutOff(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s := &Server{Address: "127.0.0.1:0", Table: tbl, ReadTimeout: time.Second}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tcp := gortsplib.ProtocolTCP
	c := &gortsplib.Client{Protocol: &tcp}
	desc := &description.Session{Medias: []*description.Media{{
		Type:    description.MediaTypeVideo,
		Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: sps720, PPS: []byte{0x68, 0xee, 0x3c, 0x80}}},
	}}}
	if err := c.StartRecording("rtsp://"+s.Addr().String()+"/live/stall", desc); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !tbl.Live("live/stall") {
		t.Fatal("not live after RECORD")
	}
	start := time.Now()
	// 8 s: generous for a loaded machine, and still short of the 10 s default, so a cut in
	// time came from the ReadTimeout set here.
	mediatest.EventuallyT(t, 8*time.Second, func() bool { return !tbl.Live("live/stall") }, "stalled publisher not cut off")
	t.Logf("stalled publisher cut off after %v (ReadTimeout 1 s)", time.Since(start).Round(time.Millisecond))
}

// TestMaxViewers: a stream at its viewer cap (all protocols together) answers PLAY with 503;
// once a viewer leaves, RTSP plays again.
func TestMaxViewers(t *testing.T) {
	tbl := media.NewTable(media.Config{MaxViewers: 1})
	defer tbl.Close()
	_, base := startServer(t, tbl)
	pub := mediatest.PublishRTSP(t, base+"/live/cap", "tcp", mediatest.Source{})
	mediatest.WaitLive(t, tbl, "live/cap", pub)

	other, err := tbl.Get("live/cap").TryJoin(media.ProtoHLS) // a viewer on another protocol
	if err != nil {
		t.Fatal(err)
	}
	_, err = mediatest.ProbeStream(context.Background(), base+"/live/cap", mediatest.ReadOptions{RTSPTransport: "tcp", Timeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("RTSP over the cap: %v, want a 503 refusal", err)
	}
	other.Leave()
	checkProbe(t, base+"/live/cap", "tcp")
}

// sps720 is an H.264 SPS for 1280x720, enough for an announced format.
var sps720 = []byte{
	0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50,
	0x05, 0xbb, 0x01, 0x6c, 0x80, 0x00, 0x00, 0x03,
	0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18,
	0xcb,
}
