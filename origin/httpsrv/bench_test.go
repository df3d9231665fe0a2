package httpsrv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	rtmpcodecs "github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/origin/rtmpsrv"
	"github.com/peergate/peergate/origin/rtspsrv"
)

// Benchmark shape (reported, not asserted).
const (
	benchStream   = "live/bench"
	benchViewers  = 200
	benchWindow   = 10 * time.Second
	benchFPS      = 25
	benchGOP      = 25     // key frame every second
	benchFrameLen = 10_000 // 25 fps x 10 kB = 2 Mbit/s
)

// TestBenchOriginProcess is the origin the benchmark measures, run in its own process so
// its CPU and RSS are not mixed with the clients'. It does nothing in a normal test run.
func TestBenchOriginProcess(t *testing.T) {
	if os.Getenv("HTTPSRV_BENCH_ORIGIN") != "1" {
		return
	}
	e := newEnv(t, media.Config{})
	h := e.startHTTP(nil)
	rs := &rtspsrv.Server{Address: "127.0.0.1:0", Table: e.tbl, Logger: testLogger(t)}
	if err := rs.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	rm := &rtmpsrv.Server{Address: "127.0.0.1:0", Table: e.tbl, Logger: testLogger(t)}
	if err := rm.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	fmt.Printf("ADDRS %s %s %s\n", h.Addr(), rs.Addr(), rm.Addr())
	// Publish on the first line from the parent, so it can time the first playlist.
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return
	}
	_, stop := e.synth(benchStream, benchFPS, benchGOP, benchFrameLen)
	defer stop()
	fmt.Println("PUBLISHED")
	_, _ = io.Copy(io.Discard, in) // run until the parent closes stdin
}

// procStats reads a process's CPU time and memory from /proc.
func procStats(pid int) (cpu time.Duration, rssKB, hwmKB int64) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		cpu = time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == "VmRSS:" {
				rssKB, _ = strconv.ParseInt(f[1], 10, 64)
			}
			if len(f) >= 2 && f[0] == "VmHWM:" {
				hwmKB, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	return
}

// BenchmarkViewers200: one 2 Mbit/s stream to 200 viewers (a third each RTMP, RTSP over
// TCP, HLS) on loopback; reports the origin process's CPU and RSS over the window and the
// time from publish to the first HLS playlist. Run with -benchtime=1x.
func BenchmarkViewers200(b *testing.B) {
	for b.Loop() {
		benchViewers200(b)
	}
}

func benchViewers200(b *testing.B) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchOriginProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "HTTPSRV_BENCH_ORIGIN=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDRS ") {
		b.Fatalf("origin process: %q %v", line, err)
	}
	addrs := strings.Fields(line)[1:]
	httpAddr, rtspAddr, rtmpAddr := addrs[0], addrs[1], addrs[2]
	go func() { _, _ = io.Copy(io.Discard, out) }()

	// Publish, then time the first HLS playlist (the muxer starts on StreamRunning).
	published := time.Now()
	fmt.Fprintln(stdin, "publish")
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: benchViewers}}
	var firstPlaylist time.Duration
	for time.Since(published) < 20*time.Second {
		res, err := hc.Get("http://" + httpAddr + "/" + benchStream + "/index.m3u8")
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == 200 {
				firstPlaylist = time.Since(published)
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if firstPlaylist == 0 {
		b.Fatal("no HLS playlist within 20 s")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var bytes [3]atomic.Int64
	var failed atomic.Int64
	var connected atomic.Int64
	for i := range benchViewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			switch i % 3 {
			case 0:
				err = benchRTMP(ctx, rtmpAddr, &bytes[0], &connected)
			case 1:
				err = benchRTSP(ctx, rtspAddr, &bytes[1], &connected)
			default:
				err = benchHLS(ctx, hc, httpAddr, i, &bytes[2], &connected)
			}
			if err != nil && ctx.Err() == nil {
				failed.Add(1)
				b.Logf("viewer %d: %v", i, err)
			}
		}()
		time.Sleep(5 * time.Millisecond) // a ramp, not a thundering herd
	}
	deadline := time.Now().Add(30 * time.Second)
	for connected.Load() < benchViewers && time.Now().Before(deadline) && failed.Load() == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	cpu0, _, _ := procStats(cmd.Process.Pid)
	var b0 [3]int64
	for i := range b0 {
		b0[i] = bytes[i].Load()
	}
	t0 := time.Now()
	time.Sleep(benchWindow)
	el := time.Since(t0)
	cpu1, rss, hwm := procStats(cmd.Process.Pid)
	var egress int64
	names := []string{"rtmp", "rtsp", "hls"}
	for i := range b0 {
		d := bytes[i].Load() - b0[i]
		egress += d
		b.Logf("%s: %.1f Mbit/s to the clients", names[i], float64(d)*8/el.Seconds()/1e6)
	}
	cancel()
	wg.Wait()

	cpuShare := (cpu1 - cpu0).Seconds() / el.Seconds()
	b.ReportMetric(float64(connected.Load()), "viewers")
	b.ReportMetric(float64(failed.Load()), "failed")
	b.ReportMetric(cpuShare*100, "origin-cpu-%")
	b.ReportMetric(float64(rss)/1024, "origin-rss-MB")
	b.ReportMetric(float64(hwm)/1024, "origin-peak-rss-MB")
	b.ReportMetric(float64(egress)*8/el.Seconds()/1e6, "egress-Mbit/s")
	b.ReportMetric(float64(firstPlaylist.Milliseconds()), "first-playlist-ms")
}

func benchRTMP(ctx context.Context, addr string, n, connected *atomic.Int64) error {
	u, _ := url.Parse("rtmp://" + addr + "/" + benchStream)
	c := &gortmplib.Client{URL: u}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := c.Initialize(cctx); err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.NetConn().Close() })
	defer stop()
	r := &gortmplib.Reader{Conn: c}
	_ = c.NetConn().SetReadDeadline(time.Now().Add(20 * time.Second))
	if err := r.Initialize(); err != nil {
		return err
	}
	for _, t := range r.Tracks() {
		switch t.Codec.(type) {
		case *rtmpcodecs.H264:
			r.OnDataH264(t, func(time.Duration, time.Duration, [][]byte) {})
		case *rtmpcodecs.MPEG4Audio:
			r.OnDataMPEG4Audio(t, func(time.Duration, []byte) {})
		default:
			return fmt.Errorf("unexpected track %T", t.Codec)
		}
	}
	connected.Add(1)
	var last uint64
	for {
		_ = c.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := r.Read(); err != nil {
			return err
		}
		cur := c.BytesReceived()
		n.Add(int64(cur - last))
		last = cur
	}
}

func benchRTSP(ctx context.Context, addr string, n, connected *atomic.Int64) error {
	u, err := base.ParseURL("rtsp://" + addr + "/" + benchStream)
	if err != nil {
		return err
	}
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: ptrTo(gortsplib.ProtocolTCP)}
	if err := c.Start(); err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()
	desc, _, err := c.Describe(u)
	if err != nil {
		return err
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		return err
	}
	c.OnPacketRTPAny(func(_ *description.Media, _ format.Format, pkt *rtp.Packet) {
		n.Add(int64(len(pkt.Payload) + 12))
	})
	if _, err := c.Play(nil); err != nil {
		return err
	}
	connected.Add(1)
	return c.Wait()
}

func ptrTo[T any](v T) *T { return &v }

// benchHLS plays like a player: master, media playlist every second, every new segment.
func benchHLS(ctx context.Context, hc *http.Client, addr string, i int, n, connected *atomic.Int64) error {
	base := "http://" + addr + "/" + benchStream + "/"
	fetch := func(path string) (string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		req.Header.Set("User-Agent", "bench-player-"+strconv.Itoa(i))
		res, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		if res.StatusCode != 200 {
			return "", fmt.Errorf("%s: %d", path, res.StatusCode)
		}
		var sb strings.Builder
		m, err := io.Copy(&sb, res.Body)
		n.Add(m)
		return sb.String(), err
	}
	master, err := fetch("index.m3u8")
	if err != nil {
		return err
	}
	var mediaPL string
	for _, l := range strings.Split(master, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			mediaPL = l
		}
	}
	connected.Add(1)
	seen := map[string]bool{}
	first := true
	for ctx.Err() == nil {
		pl, err := fetch(mediaPL)
		if err != nil {
			return err
		}
		var segs []string
		for _, l := range strings.Split(pl, "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				segs = append(segs, l)
			}
		}
		if first && len(segs) > 3 {
			segs = segs[len(segs)-3:] // players start three segments from the live edge
		}
		first = false
		for _, s := range segs {
			if seen[s] {
				continue
			}
			seen[s] = true
			if _, err := fetch(s); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}
