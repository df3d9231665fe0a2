package filesrc

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/origin/rtmpsrv"
	"github.com/peergate/peergate/origin/rtspsrv"
)

// shortClip makes a 1.6 s H.264 + AAC clip ("ts" or "mp4"); bframes 0 keeps RTP PTS order
// equal to decode order.
func shortClip(t *testing.T, container string, bframes int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "clip."+container)
	out, err := exec.Command(mediatest.Tool(t, "ffmpeg"), "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-t", "1.6", "-c:v", "libx264", "-preset", "veryfast", "-bf", strconv.Itoa(bframes), "-g", "20", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "64k", p).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	return p
}

// TestLoopKeepsTimestampsGrowing plays a short clip across more than two loops over RTSP and
// RTMP and checks that video timestamps never go backwards: MPEG-TS without B-frames (RTSP
// shows PTS only) and MP4 with B-frames (RTMP shows DTS).
func TestLoopKeepsTimestampsGrowing(t *testing.T) {
	for _, c := range []struct {
		container string
		bframes   int
		rtsp      bool
	}{{"ts", 0, true}, {"mp4", 2, false}} {
		t.Run(c.container, func(t *testing.T) {
			t.Parallel()
			testLoop(t, shortClip(t, c.container, c.bframes), c.rtsp)
		})
	}
}

func testLoop(t *testing.T, clip string, viaRTSP bool) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	rs := &rtspsrv.Server{Address: "127.0.0.1:0", Table: tbl}
	if err := rs.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	ms := &rtmpsrv.Server{Address: "127.0.0.1:0", Table: tbl}
	if err := ms.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer ms.Close()

	src := &Source{Name: "loop/clip", Path: clip, Table: tbl}
	if err := src.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dup := &Source{Name: "loop/clip", Path: src.Path, Table: tbl}
	if err := dup.Initialize(); !errors.Is(err, media.ErrAlreadyPublishing) {
		t.Fatalf("second source on a live NAME: %v", err)
	}

	var wg sync.WaitGroup
	urls := []struct{ url, tr string }{{"rtmp://" + ms.Addr().String() + "/loop/clip", ""}}
	if viaRTSP {
		urls = append(urls, struct{ url, tr string }{"rtsp://" + rs.Addr().String() + "/loop/clip", "tcp"})
	}
	for _, c := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// 110 frames at 25 fps: 4.4 s, more than two passes over the 1.6 s clip.
			ts, err := mediatest.PacketTimes(context.Background(), c.url, mediatest.ReadOptions{RTSPTransport: c.tr, Frames: 110})
			if err != nil {
				t.Errorf("%s: %v", c.url, err)
				return
			}
			if len(ts) < 100 {
				t.Errorf("%s: %d packets", c.url, len(ts))
				return
			}
			if i := mediatest.Monotonic(ts); i >= 0 {
				t.Errorf("%s: timestamp went backwards at packet %d: %v -> %v", c.url, i, ts[i-1], ts[i])
			}
			// Real time: 100 frames span about 4 s of stream time, no jumps over a loop.
			if span := ts[len(ts)-1] - ts[0]; span < 3.5 || span > 5 {
				t.Errorf("%s: %d packets span %.2f s", c.url, len(ts), span)
			}
			for i := 1; i < len(ts); i++ {
				if ts[i]-ts[i-1] > 0.2 {
					t.Errorf("%s: gap of %.3f s at packet %d", c.url, ts[i]-ts[i-1], i)
				}
			}
		}()
	}
	// Decoding works too (B-frames reordered from PTS/DTS correctly).
	wg.Add(1)
	go func() {
		defer wg.Done()
		p, err := mediatest.ProbeStream(context.Background(), urls[0].url, mediatest.ReadOptions{})
		if err != nil || p.VideoCodec != "h264" || p.Width != 640 || p.Frames < 50 || p.Log != "" {
			t.Errorf("decode %s: %+v %v", urls[0].url, p, err)
		}
	}()
	wg.Wait()
	if n := src.Loops(); n < 2 {
		t.Errorf("loops %d, want >= 2", n)
	}
}

// TestDemoClipPlays: the committed demo clip loads and decodes as 640x360 H.264.
func TestDemoClipPlays(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	ms := &rtmpsrv.Server{Address: "127.0.0.1:0", Table: tbl}
	if err := ms.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	src := &Source{Name: "demo/clip", Path: mediatest.Demo(t), Table: tbl}
	if err := src.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if m := tbl.Get("demo/clip").Meta(); m.Width != 640 || m.Height != 360 || m.Codecs != "avc1.4d401e,mp4a.40.2" {
		t.Errorf("meta %+v", m)
	}
	p, err := mediatest.ProbeStream(context.Background(), "rtmp://"+ms.Addr().String()+"/demo/clip", mediatest.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.VideoCodec != "h264" || p.Width != 640 || p.Height != 360 || p.Frames < 50 || p.Log != "" {
		t.Errorf("probe %+v", p)
	}
	_ = time.Second
}

// fileStarter starts a file source for one NAME on demand, a little late like a real pull.
type fileStarter struct {
	name  string
	path  string
	mu    sync.Mutex
	src   *Source
	asked int
}

func (f *fileStarter) Demand(tbl *media.Table, name string) bool {
	if name != f.name {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	if f.src == nil {
		f.src = &Source{Name: name, Path: f.path, Table: tbl}
		go func() {
			// Deliberately late, like a real pull: the viewers that asked must wait for
			// the source. Not a sync point: the test passes whether or not they arrived
			// first, as Find waits either way.
			time.Sleep(300 * time.Millisecond)
			f.mu.Lock()
			defer f.mu.Unlock()
			_ = f.src.Initialize()
		}()
	}
	return true
}

func (f *fileStarter) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.src != nil {
		f.src.Close()
	}
}

// TestOnDemandFirstViewerWaits: RTSP and RTMP viewers of a startable NAME wait for its
// source instead of failing; an unknown NAME still fails at once.
func TestOnDemandFirstViewerWaits(t *testing.T) {
	st := &fileStarter{name: "od/clip", path: mediatest.Demo(t)}
	// A long start bound, so that "fails at once" below cannot be confused with a start that
	// timed out.
	tbl := media.NewTable(media.Config{Starter: st, StartTimeout: 30 * time.Second})
	defer tbl.Close()
	defer st.close()
	rs := &rtspsrv.Server{Address: "127.0.0.1:0", UDPRTPAddress: "127.0.0.1:0", Table: tbl}
	if err := rs.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	ms := &rtmpsrv.Server{Address: "127.0.0.1:0", Table: tbl}
	if err := ms.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer ms.Close()

	var wg sync.WaitGroup
	for _, c := range []struct{ url, tr string }{
		{"rtsp://" + rs.Addr().String() + "/od/clip", "udp"},
		{"rtmp://" + ms.Addr().String() + "/od/clip", ""},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := mediatest.ProbeStream(context.Background(), c.url, mediatest.ReadOptions{RTSPTransport: c.tr})
			if err != nil || p.VideoCodec != "h264" || p.Width != 640 || p.Height != 360 || p.Frames < 50 {
				t.Errorf("%s: %+v %v", c.url, p, err)
			}
		}()
	}
	// ffprobe's own bound (20 s) is shorter than the start bound (30 s): an error within it
	// means the unknown NAME was answered without waiting for a start. The time (mostly
	// ffprobe's start-up) is logged.
	start := time.Now()
	_, err := mediatest.ProbeStream(context.Background(), "rtsp://"+rs.Addr().String()+"/od/other", mediatest.ReadOptions{RTSPTransport: "tcp"})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown on-demand name: err=%v after %v, want 404", err, time.Since(start))
	}
	t.Logf("unknown on-demand name refused after %v", time.Since(start).Round(time.Millisecond))
	wg.Wait()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.asked < 1 {
		t.Error("starter never asked")
	}
}
