package rtmpsrv

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/httpsrv"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/origin/rtspsrv"
)

func startRTMP(t *testing.T, tbl *media.Table, readTimeout time.Duration) (*Server, string) {
	t.Helper()
	s := &Server{Address: "127.0.0.1:0", Table: tbl, ReadTimeout: readTimeout, HandshakeTimeout: 2 * time.Second, MaxConns: 16}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, "rtmp://" + s.Addr().String()
}

func checkProbe(t *testing.T, u, transport string) {
	t.Helper()
	// 60 s: four readers and two publishers share a loaded machine with the race detector.
	p, err := mediatest.ProbeStream(context.Background(), u, mediatest.ReadOptions{RTSPTransport: transport, Timeout: 60 * time.Second})
	if err != nil {
		t.Errorf("%s %s: %v", u, transport, err)
		return
	}
	if p.VideoCodec != "h264" || p.Width != 640 || p.Height != 360 || p.Frames < 50 {
		t.Errorf("%s %s: got %+v, want h264 640x360 >= 50 frames", u, transport, p)
	}
	// RTMP readers start at a cached key frame: nothing to complain about. RTSP readers
	// join mid-GOP: start-up notes only.
	if (transport == "" && p.Log != "") || p.Corrupt() {
		t.Errorf("%s %s: decoder complained: %s", u, transport, p.Log)
	}
}

// TestRTMPPublishPlayEverywhere: ffmpeg publishes over RTMP and over RTSP; each stream is read
// back over RTMP and RTSP (TCP and UDP); a second RTMP publisher on a live NAME is refused;
// an unknown NAME gets StreamNotFound.
func TestRTMPPublishPlayEverywhere(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	_, rtmpBase := startRTMP(t, tbl, 0)
	rs := &rtspsrv.Server{Address: "127.0.0.1:0", UDPRTPAddress: "127.0.0.1:0", Table: tbl}
	if err := rs.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	rtspBase := "rtsp://" + rs.Addr().String()

	pubRTMP := mediatest.PublishRTMP(t, rtmpBase+"/live/cam1", mediatest.Source{})
	pubRTSP := mediatest.PublishRTSP(t, rtspBase+"/live/cam2", "tcp", mediatest.Source{})
	mediatest.WaitLive(t, tbl, "live/cam1", pubRTMP)
	mediatest.WaitLive(t, tbl, "live/cam2", pubRTSP)

	var wg sync.WaitGroup
	for _, c := range []struct{ url, tr string }{
		{rtmpBase + "/live/cam1", ""},
		{rtspBase + "/live/cam1", "tcp"},
		{rtspBase + "/live/cam1", "udp"},
		{rtmpBase + "/live/cam2", ""},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			checkProbe(t, c.url, c.tr)
		}()
	}

	second := mediatest.PublishRTMP(t, rtmpBase+"/live/cam1", mediatest.Source{Duration: 5 * time.Second})
	err, exited := second.Wait(30 * time.Second)
	if !exited || err == nil || !strings.Contains(second.Output(), "already being published") {
		t.Errorf("second publisher: exited=%v err=%v output=%q, want a refusal", exited, err, second.Output())
	}
	t.Logf("second publisher was told: %s", strings.TrimSpace(second.Output()))

	_, err = mediatest.ProbeStream(context.Background(), rtmpBase+"/live/nope", mediatest.ReadOptions{Timeout: 30 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown name: %v, want not found", err)
	}
	wg.Wait()

	var rtmpBytes int64
	for _, p := range tbl.Stats().Protocols {
		if p.Protocol == media.ProtoRTMP {
			rtmpBytes = p.EgressBytes
		}
	}
	if rtmpBytes == 0 {
		t.Error("no RTMP egress counted")
	}
	pubRTMP.Stop()
	if !mediatest.Eventually(10*time.Second, func() bool { return !tbl.Live("live/cam1") }) {
		t.Error("live/cam1 still live after its publisher left")
	}
}

// TestStaticApp: the app "static" reaches a single-segment NAME: ffmpeg publishes
// rtmp://host/static/demo, the table knows it as "demo", and it plays back through the same URL.
func TestStaticApp(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	_, rtmpBase := startRTMP(t, tbl, 0)
	pub := mediatest.PublishRTMP(t, rtmpBase+"/static/demo", mediatest.Source{})
	mediatest.WaitLive(t, tbl, "demo", pub)
	if tbl.Live("static/demo") {
		t.Error("static/demo is live under the app's name too")
	}
	checkProbe(t, rtmpBase+"/static/demo", "")
	pub.Stop()
}

// sps720 is a 1280x720 H.264 SPS (mediacommon's tests).
var sps720 = []byte{
	0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50,
	0x05, 0xbb, 0x01, 0x6c, 0x80, 0x00, 0x00, 0x03,
	0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18,
	0xcb,
}

// TestBadInputCutOff: a garbage handshake and a publisher that stalls mid-message are cut
// off while another stream keeps playing.
func TestBadInputCutOff(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s, base := startRTMP(t, tbl, time.Second)
	pub := mediatest.PublishRTMP(t, base+"/live/good", mediatest.Source{})
	mediatest.WaitLive(t, tbl, "live/good", pub)

	// Garbage handshake: cut off at once (bad version byte) or at the handshake deadline.
	g, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	_, _ = g.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + strings.Repeat("\xff", 3000)))
	_ = g.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(g); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("garbage handshake: connection not closed: %v", err)
	}

	// A silent connection that never finishes the handshake: cut at HandshakeTimeout (2 s).
	idle, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_, _ = idle.Write([]byte{3})
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(idle); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("stalled handshake: connection not closed: %v", err)
	}

	// A publisher that starts a message and stalls: cut at ReadTimeout (1 s), NAME freed.
	u, _ := url.Parse(base + "/live/stall")
	cl := &gortmplib.Client{URL: u, Publish: true}
	if err := cl.Initialize(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	track := &gortmplib.Track{Codec: &codecs.H264{SPS: sps720, PPS: []byte{0x68, 0xee, 0x3c, 0x80}}}
	w := &gortmplib.Writer{Conn: cl, Tracks: []*gortmplib.Track{track}}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 80; i++ {
		nalu := []byte{0x41, 0x9a, 0x02}
		if i%25 == 0 {
			nalu = []byte{0x65, 0x88, 0x84}
		}
		d := time.Duration(i) * 40 * time.Millisecond
		if err := w.WriteH264(track, d, d, [][]byte{nalu}); err != nil {
			t.Fatal(err)
		}
	}
	if !mediatest.Eventually(10*time.Second, func() bool { return tbl.Get("live/stall") != nil }) {
		t.Fatal("stalling publisher never went live")
	}
	// Chunk basic header (fmt 0, csid 6), timestamp, length 1000, type 9 (video), stream 1,
	// then 10 of the 1000 body bytes, and silence.
	partial := []byte{0x06, 0, 0, 0, 0, 0x03, 0xe8, 0x09, 1, 0, 0, 0, 0x17, 1, 0, 0, 0, 0, 0, 0, 0, 0}
	if _, err := cl.NetConn().Write(partial); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// 8 s: generous for a loaded machine, and still short of the 10 s default, so a cut in
	// time came from the ReadTimeout set here.
	mediatest.EventuallyT(t, 8*time.Second, func() bool { return !tbl.Live("live/stall") }, "stalled publisher not cut off")
	t.Logf("stalled publisher cut off after %v (ReadTimeout 1 s)", time.Since(start).Round(time.Millisecond))

	// The good stream still plays.
	checkProbe(t, base+"/live/good", "")
}

// TestConnectionCap: connections beyond MaxConns are closed at once, before any handshake
// deadline, and slots free up when connections end.
func TestConnectionCap(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s := &Server{Address: "127.0.0.1:0", Table: tbl, MaxConns: 2, HandshakeTimeout: 5 * time.Second}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// C0 only: a talking client is never evicted to make room (netcap.EvictSilentAfter).
		if _, err := c.Write([]byte{3}); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	if !mediatest.Eventually(5*time.Second, func() bool { return s.ln.Active() == 2 }) {
		t.Fatalf("held connections not accepted: %d active", s.ln.Active())
	}
	extra, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	// Closed at once, so the read ends with EOF or a reset long before the handshake deadline.
	_ = extra.SetReadDeadline(time.Now().Add(4 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("connection over the cap was not closed: %v", err)
	}
	held[0].Close()
	mediatest.EventuallyT(t, 5*time.Second, func() bool { return s.ln.Active() < 2 }, "slot not freed")
	again, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	// Served, not just left open: C0 and C1 of a plain handshake get S0 (version 3) back.
	c0c1 := make([]byte, 1+1536)
	c0c1[0] = 3
	if _, err := again.Write(c0c1); err != nil {
		t.Fatal(err)
	}
	_ = again.SetReadDeadline(time.Now().Add(5 * time.Second))
	s0 := make([]byte, 1)
	if _, err := io.ReadFull(again, s0); err != nil || s0[0] != 3 {
		t.Fatalf("connection under the cap not served: S0 %v, %v", s0, err)
	}
}

// TestUnsupportedTrackIgnored: a publisher with MP3 audio (not carried by the hub) publishes
// its H.264 video; the MP3 track is dropped, not a crash.
func TestUnsupportedTrackIgnored(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	_, base := startRTMP(t, tbl, 0)
	args := []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25",
		"-c:a", "libmp3lame", "-b:a", "64k", "-f", "flv", base + "/live/mp3"}
	pub := mediatest.Start(t, "ffmpeg", args...)
	mediatest.WaitLive(t, tbl, "live/mp3", pub)
	st := tbl.Get("live/mp3")
	if n := len(st.Tracks()); n != 1 {
		t.Fatalf("%d tracks, want the video only", n)
	}
	before := st.IngressBytes()
	if !mediatest.Eventually(10*time.Second, func() bool { return st.IngressBytes() > before+10000 }) {
		t.Fatalf("ingest stalled: %s", pub.Output())
	}
}

// TestMaxViewers: a stream at its viewer cap (all protocols together) refuses an RTMP player;
// once a viewer leaves, RTMP plays again.
func TestMaxViewers(t *testing.T) {
	tbl := media.NewTable(media.Config{MaxViewers: 1})
	defer tbl.Close()
	_, base := startRTMP(t, tbl, 0)
	pub := mediatest.PublishRTMP(t, base+"/live/cap", mediatest.Source{})
	mediatest.WaitLive(t, tbl, "live/cap", pub)

	other, err := tbl.Get("live/cap").TryJoin(media.ProtoHLS) // a viewer on another protocol
	if err != nil {
		t.Fatal(err)
	}
	p, err := mediatest.ProbeStream(context.Background(), base+"/live/cap", mediatest.ReadOptions{Timeout: 10 * time.Second})
	if err == nil && p.Frames > 0 {
		t.Fatalf("RTMP over the cap decoded %d frames, want a refusal", p.Frames)
	}
	other.Leave()
	checkProbe(t, base+"/live/cap", "")
}

// neverStarts claims every name is on demand but never publishes it.
type neverStarts struct{}

func (neverStarts) Demand(*media.Table, string) bool { return true }

// TestPlayNotFoundAfterStartTimeout: a player of an on-demand NAME whose source does not
// come up within the start bound still gets NetStream.Play.StreamNotFound, even when that
// bound is longer than the handshake timeout.
func TestPlayNotFoundAfterStartTimeout(t *testing.T) {
	tbl := media.NewTable(media.Config{Starter: neverStarts{}, StartTimeout: 3 * time.Second})
	defer tbl.Close()
	_, base := startRTMP(t, tbl, 0) // HandshakeTimeout 2 s
	_, err := mediatest.ProbeStream(context.Background(), base+"/live/never", mediatest.ReadOptions{Timeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("got %v, want a StreamNotFound answer", err)
	}
}

// TestZeroSampleRateAACRefused: an AAC configuration with an explicit sample rate of 0 is
// not carried (every output divides by the clock rate: gohlslib's muxer panicked and took
// the whole origin down); the stream with only that track is refused and the process lives.
func TestZeroSampleRateAACRefused(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	hs := &httpsrv.Server{Address: "127.0.0.1:0", Table: tbl}
	if err := hs.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	tbl.Notify(hs) // eager HLS muxers, as main.go wires them
	_, base := startRTMP(t, tbl, 0)
	u, _ := url.Parse(base + "/live/zero")
	cl := &gortmplib.Client{URL: u, Publish: true}
	if err := cl.Initialize(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// SampleRate 0 is written as index 15 with an explicit 24-bit rate of 0.
	track := &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: &mpeg4audio.AudioSpecificConfig{
		Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 0, ChannelCount: 2}}}
	w := &gortmplib.Writer{Conn: cl, Tracks: []*gortmplib.Track{track}}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		d := time.Duration(i) * 20 * time.Millisecond
		if err := w.WriteMPEG4Audio(track, d, []byte{0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c}); err != nil {
			break // refused: the server closed the connection
		}
	}
	// The sync point is the refusal itself: the server hangs up. A published stream would
	// keep the connection open (and start the eager muxer), so the read would time out.
	nc := cl.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, nc); err != nil && !isReset(err) {
		t.Fatalf("publisher not refused: %v", err)
	}
	mediatest.EventuallyT(t, 5*time.Second, func() bool { return !tbl.Live("live/zero") }, "NAME still claimed after the refusal")
	if st := tbl.Get("live/zero"); st != nil {
		t.Fatalf("stream published with tracks %v", st.Tracks())
	}
	res, err := http.Get("http://" + hs.Addr().String() + "/live/zero/index.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("index.m3u8: %d, want 404", res.StatusCode)
	}
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "broken pipe")
}
