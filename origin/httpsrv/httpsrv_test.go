package httpsrv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/filesrc"
	"github.com/peergate/peergate/origin/media"
)

// TestReadBack: ffmpeg publishes H.264 640x360 over RTSP; ffprobe reads it back over HLS
// (every variant) and HTTP MPEG-TS and decodes at least 50 frames of it.
func TestReadBack(t *testing.T) {
	mediatest.Tool(t, "ffprobe")
	e := newEnv(t, media.Config{})
	servers := map[string]*Server{}
	for _, v := range []string{VariantMPEGTS, VariantFMP4, VariantLowLatency} {
		servers[v] = e.startHTTP(func(s *Server) { s.HLS.Variant = v })
	}
	e.publishFFmpeg("live/cam1", mediatest.Source{})

	cases := []struct {
		desc string
		url  string
	}{
		{"hls mpegts", baseURL(servers[VariantMPEGTS]) + "/live/cam1/index.m3u8"},
		{"hls fmp4", baseURL(servers[VariantFMP4]) + "/live/cam1/index.m3u8"},
		{"hls lowlatency", baseURL(servers[VariantLowLatency]) + "/live/cam1/index.m3u8"},
		{"http mpegts", baseURL(servers[VariantMPEGTS]) + "/live/cam1/mpegts"},
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			p, err := mediatest.ProbeStream(context.Background(), c.url, mediatest.ReadOptions{Frames: 50, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %+v", c.desc, p)
			if p.VideoCodec != "h264" || p.Width != 640 || p.Height != 360 || p.Frames < 50 {
				t.Fatalf("decoded %+v, want h264 640x360 with >= 50 frames", p)
			}
		})
	}
	// The MPEG-TS viewer left: its viewer count is back to zero and its bytes were counted.
	if !mediatest.Eventually(5*time.Second, func() bool { return protoStats(e.tbl, media.ProtoMPEGTS).Clients == 0 }) {
		t.Fatalf("mpegts clients = %d after the viewer left", protoStats(e.tbl, media.ProtoMPEGTS).Clients)
	}
	if ps := protoStats(e.tbl, media.ProtoMPEGTS); ps.EgressBytes == 0 {
		t.Fatal("mpegts egress not counted")
	}
	if ps := protoStats(e.tbl, media.ProtoHLS); ps.EgressBytes == 0 || ps.Clients == 0 {
		t.Fatalf("hls stats %+v: want viewers and egress counted", ps)
	}
}

var pathCases = []struct {
	desc string
	path string
	want int
}{
	{"unknown master", "/live/none/index.m3u8", 404},
	{"unknown mpegts", "/live/none/mpegts", 404},
	{"unknown embed", "/live/none/embed.html", 404},
	{"unknown segment", "/live/none/abc_main_seg1.ts", 404},
	{"known stream, unknown segment", "/live/known/nope_main_seg1.ts", 404},
	{"known stream, unknown playlist", "/live/known/nope.m3u8", 404},
	{"dash not served", "/live/known/index.mpd", 404},
	{"root", "/", 404},
	{"traversal", "/live/../known/index.m3u8", 404},
	{"escaped", "/live%2Fknown/index.m3u8", 404},
	{"known master", "/live/known/index.m3u8", 200},
	{"known embed", "/live/known/embed.html", 200},
}

// TestNotFoundAndCORS: unknown names and paths get 404 with CORS; preflight and methods.
func TestNotFoundAndCORS(t *testing.T) {
	e := newEnv(t, media.Config{})
	s := e.startHTTP(nil)
	e.synth("live/known", 25, 25, 1000)
	b := baseURL(s)
	for _, c := range pathCases {
		t.Run(c.desc, func(t *testing.T) {
			code, h, _ := rawGet(t, s.Addr().String(), c.path)
			if code != c.want {
				t.Fatalf("GET %s = %d, want %d", c.path, code, c.want)
			}
			if h.Get("Access-Control-Allow-Origin") != "*" {
				t.Fatalf("GET %s: no CORS header: %v", c.path, h)
			}
		})
	}

	req, _ := http.NewRequest(http.MethodOptions, b+"/live/known/index.m3u8", nil)
	req.Header.Set("Origin", "null")
	req.Header.Set("Access-Control-Request-Method", "GET")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "GET") {
		t.Fatalf("preflight: %d %v", res.StatusCode, res.Header)
	}
	res, err = http.Post(b+"/live/known/index.m3u8", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST = %d, want 405", res.StatusCode)
	}

	// The master playlist names a media playlist that serves, with the query carried on.
	code, h, body := get(t, b+"/live/known/index.m3u8?token=abc", map[string]string{"Origin": "null"})
	if code != 200 || h.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("master: %d %v", code, h)
	}
	mustContain(t, body, "?token=abc", "master playlist")
	var media string
	for _, l := range strings.Split(body, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			media = l
		}
	}
	code, _, body = get(t, b+"/live/known/"+media, nil)
	if code != 200 || !strings.Contains(body, "#EXTINF") {
		t.Fatalf("media playlist %s: %d %q", media, code, body)
	}
}

// rawGet sends a GET with the path as is (no client-side cleaning).
func rawGet(t testing.TB, addr, path string) (int, http.Header, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, res.Header, string(b)
}

// TestLimits: oversized headers get 431, connections over the cap are closed at once.
func TestLimits(t *testing.T) {
	e := newEnv(t, media.Config{})
	s := e.startHTTP(func(s *Server) { s.MaxHeaderBytes = 4 << 10; s.MaxConns = 3 })

	code, _, _ := get(t, baseURL(s)+"/live/none/index.m3u8", map[string]string{"X-Big": strings.Repeat("a", 64<<10)})
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("big header = %d, want 431", code)
	}

	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		// Half a request line: a talking client is never evicted to make room (netcap.EvictSilentAfter).
		if _, err := c.Write([]byte("GET")); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	if !mediatest.Eventually(5*time.Second, func() bool { return s.Stats().Conns == 3 }) {
		t.Fatalf("conns = %d, want 3", s.Stats().Conns)
	}
	extra, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("connection over the cap was not closed: %v", err)
	}
	extra.Close()
	if s.Stats().Rejected < 1 {
		t.Fatal("rejection not counted")
	}
	for _, c := range held {
		c.Close()
	}
	// Below the cap again, requests work.
	if !mediatest.Eventually(5*time.Second, func() bool { return s.Stats().Conns == 0 }) {
		t.Fatalf("conns = %d after close", s.Stats().Conns)
	}
	if code, _, _ := get(t, baseURL(s)+"/live/none/mpegts", nil); code != 404 {
		t.Fatalf("after cap: %d", code)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestSlowClientCutOff: an MPEG-TS viewer that stops reading is cut off by the write
// deadline (or its hub queue overflowing) while the stream and other viewers go on.
func TestSlowClientCutOff(t *testing.T) {
	e := newEnv(t, media.Config{})
	s := e.startHTTP(func(s *Server) { s.WriteTimeout = time.Second })
	// 100 KB frames at 25 fps: 20 Mbit/s fills the socket buffers within seconds.
	e.synth("live/fast", 25, 25, 100_000)

	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	slow, err := d.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET /live/fast/mpegts HTTP/1.1\r\nHost: x\r\n\r\n")
	if !mediatest.Eventually(5*time.Second, func() bool { return protoStats(e.tbl, media.ProtoMPEGTS).Clients == 1 }) {
		t.Fatal("slow viewer never joined")
	}
	// A healthy viewer keeps receiving meanwhile.
	res, err := http.Get(baseURL(s) + "/live/fast/mpegts")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	done := make(chan int64, 1)
	go func() {
		n, _ := io.CopyN(io.Discard, res.Body, 5<<20)
		done <- n
	}()
	if !mediatest.Eventually(10*time.Second, func() bool { return protoStats(e.tbl, media.ProtoMPEGTS).Clients == 1 }) {
		t.Fatalf("slow viewer not cut off: clients = %d", protoStats(e.tbl, media.ProtoMPEGTS).Clients)
	}
	select {
	case n := <-done:
		if n < 5<<20 {
			t.Fatalf("healthy viewer got %d bytes", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("healthy viewer stalled")
	}
	// The slow connection is closed: draining it ends in EOF or a reset, not a timeout.
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, slow)
	if isTimeout(err) {
		t.Fatal("slow connection still open")
	}
}

// TestHLSViewers: distinct clients count as HLS viewers until the session timeout.
func TestHLSViewers(t *testing.T) {
	e := newEnv(t, media.Config{})
	s := e.startHTTP(func(s *Server) { s.HLS.SessionTimeout = 500 * time.Millisecond })
	st, _ := e.synth("live/v", 25, 25, 1000)
	for _, ua := range []string{"player-a", "player-b", "player-a"} {
		if code, _, _ := get(t, baseURL(s)+"/live/v/index.m3u8", map[string]string{"User-Agent": ua}); code != 200 {
			t.Fatalf("index = %d", code)
		}
	}
	if n := st.Viewers(); n != 2 {
		t.Fatalf("viewers = %d, want 2", n)
	}
	if !mediatest.Eventually(5*time.Second, func() bool { return st.Viewers() == 0 }) {
		t.Fatalf("viewers = %d after the session timeout", st.Viewers())
	}
}

// TestEmbedPage: the page is self-contained, escapes the query and plays index.m3u8.
func TestEmbedPage(t *testing.T) {
	e := newEnv(t, media.Config{})
	s := e.startHTTP(nil)
	e.synth("live/cam", 25, 25, 1000)
	code, h, body := get(t, baseURL(s)+`/live/cam/embed.html?t=%22%3E%3Cscript%3Ealert(1)%3C/script%3E`, nil)
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("embed: %d %v", code, h)
	}
	for _, bad := range []string{"<script>alert", "http://", "https://", `"><script`} {
		if strings.Contains(body, bad) {
			t.Fatalf("embed page contains %q:\n%s", bad, body)
		}
	}
	for _, want := range []string{`src="index.m3u8?t=`, "muted", "autoplay", "playsinline", "<title>live/cam</title>"} {
		mustContain(t, body, want, "embed page")
	}
	mustContain(t, h.Get("Content-Security-Policy"), "script-src 'self' 'sha256-", "CSP")
}

// TestFileLoopContinuity: a 2 s clip looped by filesrc plays on over HLS across more than
// two loops, its timestamps never going backwards.
func TestFileLoopContinuity(t *testing.T) {
	clip := filepath.Join(t.TempDir(), "clip.ts")
	gen := mediatest.Start(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", "-bf", "2",
		"-c:a", "aac", "-ac", "2", "-f", "mpegts", clip)
	if err, ok := gen.Wait(30 * time.Second); !ok || err != nil {
		t.Fatalf("ffmpeg clip: %v %s", err, gen.Output())
	}
	e := newEnv(t, media.Config{})
	s := e.startHTTP(nil)
	src := &filesrc.Source{Name: "demo", Path: clip, Table: e.tbl, Logger: testLogger(t)}
	if err := src.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)

	// 150 video packets at 25 fps: 6 s of stream, three loops of the clip.
	ts, err := mediatest.PacketTimes(context.Background(), baseURL(s)+"/demo/index.m3u8",
		mediatest.ReadOptions{Frames: 150, Timeout: 40 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) < 150 {
		t.Fatalf("read %d packets, want 150", len(ts))
	}
	if i := mediatest.Monotonic(ts); i >= 0 {
		t.Fatalf("DTS goes backwards at packet %d: %v -> %v", i, ts[i-1], ts[i])
	}
	span := ts[len(ts)-1] - ts[0]
	t.Logf("%d packets over %.2f s of stream, %d loops of the file so far", len(ts), span, src.Loops())
	if span < 4.5 || src.Loops() < 2 {
		t.Fatalf("span %.2f s over %d loops, want more than two 2 s loops", span, src.Loops())
	}
	// The playlist carries no discontinuity: the loop is seamless for players.
	code, _, pl := get(t, baseURL(s)+"/demo/main_stream.m3u8", nil)
	if code != 200 || strings.Contains(pl, "DISCONTINUITY") {
		t.Fatalf("playlist %d has a discontinuity:\n%s", code, pl)
	}
}

// TestFirstSegmentBound: a first playlist request waits for the first segment within
// FirstSegmentTimeout (then 503), gets 404 if the stream ends meanwhile, and the muxer
// stops with its stream.
func TestFirstSegmentBound(t *testing.T) {
	e := newEnv(t, media.Config{})
	s := e.startHTTP(func(s *Server) { s.HLS.FirstSegmentTimeout = 500 * time.Millisecond })
	// One key frame only: the segmenter never closes a segment.
	_, stop := e.synth("live/stuck", 25, 1<<30, 100)
	start := time.Now()
	code, h, _ := get(t, baseURL(s)+"/live/stuck/index.m3u8", nil)
	if el := time.Since(start); code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || el > 3*time.Second {
		t.Fatalf("stuck stream: %d %v after %v, want 503 with Retry-After after about 500 ms", code, h, el)
	}
	if s.Stats().Muxers != 1 {
		t.Fatalf("muxers = %d", s.Stats().Muxers)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		stop()
	}()
	if code, _, _ := get(t, baseURL(s)+"/live/stuck/index.m3u8", nil); code != http.StatusNotFound {
		t.Fatalf("stream ended while waiting: %d, want 404", code)
	}
	if !mediatest.Eventually(5*time.Second, func() bool { return s.Stats().Muxers == 0 }) {
		t.Fatalf("muxer still running after its stream ended")
	}
}

// TestMaxViewers: limits.max_viewers counts every protocol together; over it, HLS and HTTP
// MPEG-TS answer 503 with Retry-After, and a freed slot is taken again.
func TestMaxViewers(t *testing.T) {
	e := newEnv(t, media.Config{MaxViewers: 2})
	s := e.startHTTP(func(s *Server) { s.HLS.SessionTimeout = 300 * time.Millisecond })
	st, _ := e.synth("live/cap", 25, 25, 1000)

	// One MPEG-TS viewer stays connected, one HLS viewer has a session.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, baseURL(s)+"/live/cap/mpegts", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("first mpegts viewer: %v %v", res, err)
	}
	defer res.Body.Close()
	if code, _, _ := get(t, baseURL(s)+"/live/cap/index.m3u8", map[string]string{"User-Agent": "player-a"}); code != 200 {
		t.Fatalf("first HLS viewer: %d", code)
	}
	if n := st.Viewers(); n != 2 {
		t.Fatalf("viewers = %d, want 2", n)
	}
	for _, c := range []struct{ path, ua string }{
		{"/live/cap/index.m3u8", "player-b"},
		{"/live/cap/mpegts", "player-c"},
	} {
		code, h, _ := get(t, baseURL(s)+c.path, map[string]string{"User-Agent": c.ua})
		if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Fatalf("%s over the cap: %d (Retry-After %q), want 503", c.path, code, h.Get("Retry-After"))
		}
	}
	// The HLS viewer already counted keeps being served.
	if code, _, _ := get(t, baseURL(s)+"/live/cap/index.m3u8", map[string]string{"User-Agent": "player-a"}); code != 200 {
		t.Fatalf("counted HLS viewer refused: %d", code)
	}
	// The MPEG-TS viewer leaves: a new viewer gets in.
	cancel()
	res.Body.Close()
	if !mediatest.Eventually(5*time.Second, func() bool { return st.Viewers() < 2 }) {
		t.Fatalf("viewers = %d after the MPEG-TS viewer left", st.Viewers())
	}
	if code, _, _ := get(t, baseURL(s)+"/live/cap/index.m3u8", map[string]string{"User-Agent": "player-b"}); code != 200 {
		t.Fatalf("a freed slot was not taken: %d", code)
	}
}
