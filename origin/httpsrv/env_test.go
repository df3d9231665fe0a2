package httpsrv

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/origin/rtspsrv"
)

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("HTTPSRV_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type env struct {
	t    testing.TB
	tbl  *media.Table
	rtsp *rtspsrv.Server
}

func newEnv(t testing.TB, cfg media.Config) *env {
	t.Helper()
	e := &env{t: t}
	e.tbl = media.NewTable(cfg)
	t.Cleanup(e.tbl.Close)
	return e
}

// startHTTP starts an httpsrv.Server on the env's table, wired for eager muxers.
func (e *env) startHTTP(mut func(*Server)) *Server {
	e.t.Helper()
	s := &Server{Address: "127.0.0.1:0", Table: e.tbl, Logger: testLogger(e.t)}
	if mut != nil {
		mut(s)
	}
	if err := s.Initialize(); err != nil {
		e.t.Fatal(err)
	}
	e.tbl.Notify(s) // eager muxers, as main.go wires them
	e.t.Cleanup(s.Close)
	return s
}

// publishFFmpeg publishes a live testsrc2 + sine (H.264 640x360 25 fps + AAC) over RTSP
// into the table through rtspsrv and waits for the stream.
func (e *env) publishFFmpeg(name string, src mediatest.Source) *mediatest.Proc {
	e.t.Helper()
	if e.rtsp == nil {
		e.rtsp = &rtspsrv.Server{Address: "127.0.0.1:0", Table: e.tbl, Logger: testLogger(e.t)}
		if err := e.rtsp.Initialize(); err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(e.rtsp.Close)
	}
	p := mediatest.PublishRTSP(e.t, "rtsp://"+e.rtsp.Addr().String()+"/"+name, "tcp", src)
	if !mediatest.Eventually(15*time.Second, func() bool { return e.tbl.Get(name) != nil }) {
		e.t.Fatalf("stream %s never appeared; ffmpeg: %s", name, p.Output())
	}
	return p
}

var (
	testSPS = []byte{
		0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02,
		0x27, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04,
		0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9, 0x20,
	}
	testPPS = []byte{0x44, 0x01, 0xc0, 0x25, 0x2f, 0x05, 0x32, 0x40}
)

// synth publishes synthetic H.264 units (not decodable pictures) at fps with a key frame
// every gop units, each frameBytes long, until the returned stop is called.
func (e *env) synth(name string, fps, gop, frameBytes int) (*media.Stream, func()) {
	e.t.Helper()
	st, err := e.tbl.Publish(name, []*media.Track{{Format: &format.H264{
		PayloadTyp: 96, SPS: testSPS, PPS: testPPS, PacketizationMode: 1,
	}}})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(fps))
		defer tick.Stop()
		payload := make([]byte, frameBytes)
		for i := 0; ; i++ {
			typ := byte(1)
			if i%gop == 0 {
				typ = 5
			}
			nalu := append([]byte{typ | 0x60}, payload...)
			d := time.Duration(i) * time.Second / time.Duration(fps)
			st.WriteUnit(media.Unit{Track: 0, PTS: d, DTS: d, AU: [][]byte{nalu}})
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			st.Close()
		})
	}
	e.t.Cleanup(stop)
	return st, stop
}

func baseURL(s *Server) string { return "http://" + s.Addr().String() }

// get fetches url and returns status, headers and up to 1 MiB of body.
func get(t testing.TB, url string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 20 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, res.Header, string(b)
}

// hlsStats returns the table's HLS clients and egress bytes.
func protoStats(tbl *media.Table, proto string) media.ProtoStats {
	for _, p := range tbl.Stats().Protocols {
		if p.Protocol == proto {
			return p
		}
	}
	return media.ProtoStats{Protocol: proto}
}

func mustContain(t testing.TB, s, sub, what string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%s: %q not in %q", what, sub, s)
	}
}

var _ = fmt.Sprintf
