package loadbench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	rtmpcodecs "github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/origin/rtmpsrv"
	"github.com/peergate/peergate/origin/rtspsrv"
)

// clientEnv tells the child test process to act as the viewers (the stdlib's helper-process pattern).
const clientEnv = "PEERGATE_LOAD_CLIENTS"

type clientPlan struct {
	RTMP      string
	RTSP      string
	PerProto  int
	Duration  time.Duration
	RTSPAlsoU bool // half of the RTSP viewers over UDP
}

type clientResult struct {
	Connected int
	Failed    int
	Bytes     int64
	Errors    []string
}

// BenchmarkViewers200 publishes one 2 Mbit/s ffmpeg stream over RTMP and plays it to 200 Go
// viewers (100 RTMP, 50 RTSP/TCP, 50 RTSP/UDP) running in a child process for 10 s, then
// reports the origin process's CPU (cores), peak RSS and the bit rate each viewer got.
// Run: go test -run XXX -bench Viewers200 -benchtime 1x ./origin/internal/loadbench/
// HLS viewers are added by the HLS output's own benchmark.
func BenchmarkViewers200(b *testing.B) {
	for i := 0; i < b.N; i++ {
		runViewers(b, 100, 10*time.Second)
	}
}

func runViewers(b *testing.B, perProto int, dur time.Duration) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	ms := &rtmpsrv.Server{Address: "127.0.0.1:0", Table: tbl, MaxConns: 4 * perProto}
	if err := ms.Start(); err != nil {
		b.Fatal(err)
	}
	defer ms.Close()
	rs := &rtspsrv.Server{Address: "127.0.0.1:0", UDPRTPAddress: "127.0.0.1:0", Table: tbl, MaxConns: 4 * perProto}
	if err := rs.Start(); err != nil {
		b.Fatal(err)
	}
	defer rs.Close()

	args := append(mediatest.SourceArgs(mediatest.Source{}), "-b:v", "2M", "-maxrate", "2M", "-bufsize", "1M", "-f", "flv",
		"rtmp://"+ms.Addr().String()+"/live/bench")
	published := time.Now()
	pub := mediatest.Start(b, "ffmpeg", args...)
	if !mediatest.Eventually(15*time.Second, func() bool { return tbl.Get("live/bench") != nil }) {
		b.Fatalf("no stream: %s", pub.Output())
	}
	b.ReportMetric(time.Since(published).Seconds(), "s_publish_to_live")

	plan := clientPlan{
		RTMP: "rtmp://" + ms.Addr().String() + "/live/bench", RTSP: "rtsp://" + rs.Addr().String() + "/live/bench",
		PerProto: perProto, Duration: dur, RTSPAlsoU: true,
	}
	enc, _ := json.Marshal(plan)
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestLoadClients$", "-test.v")
	cmd.Env = append(os.Environ(), clientEnv+"="+string(enc))
	cpu0, t0 := processCPU(), time.Now()
	out, err := cmd.CombinedOutput()
	cpu1, t1 := processCPU(), time.Now()
	if err != nil {
		b.Fatalf("clients: %v: %s", err, out)
	}
	var res clientResult
	line := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "RESULT ") {
			line = strings.TrimPrefix(l, "RESULT ")
		}
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		b.Fatalf("client output: %v: %s", err, out)
	}
	if res.Failed > 0 {
		b.Logf("%d viewers failed: %v", res.Failed, res.Errors)
	}
	el := t1.Sub(t0).Seconds()
	b.ReportMetric((cpu1-cpu0).Seconds()/el, "origin_cpu_cores")
	b.ReportMetric(float64(peakRSS())/(1<<20), "origin_peak_rss_MiB")
	b.ReportMetric(float64(res.Connected), "viewers")
	if res.Connected > 0 {
		b.ReportMetric(float64(res.Bytes)*8/dur.Seconds()/float64(res.Connected)/1e6, "Mbit/s_per_viewer")
	}
	st := tbl.Stats()
	b.ReportMetric(float64(st.EgressBytes)*8/el/1e6, "origin_egress_Mbit/s")
}

// TestLoadClients is the viewer side of BenchmarkViewers200; without the plan in its
// environment it has nothing to do.
func TestLoadClients(t *testing.T) {
	raw := os.Getenv(clientEnv)
	if raw == "" {
		return
	}
	var plan clientPlan
	if err := json.Unmarshal([]byte(raw), &plan); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), plan.Duration)
	defer cancel()
	var (
		wg        sync.WaitGroup
		bytes     atomic.Int64
		connected atomic.Int64
		mu        sync.Mutex
		errs      []string
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 10 {
			errs = append(errs, err.Error())
		}
	}
	for i := 0; i < plan.PerProto; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := rtmpViewer(ctx, plan.RTMP, &bytes, &connected); err != nil && ctx.Err() == nil {
				fail(err)
			}
		}()
		proto := gortsplib.ProtocolTCP
		if plan.RTSPAlsoU && i%2 == 1 {
			proto = gortsplib.ProtocolUDP
		}
		go func() {
			defer wg.Done()
			if err := rtspViewer(ctx, plan.RTSP, proto, &bytes, &connected); err != nil && ctx.Err() == nil {
				fail(err)
			}
		}()
	}
	wg.Wait()
	res := clientResult{Connected: int(connected.Load()), Failed: 2*plan.PerProto - int(connected.Load()), Bytes: bytes.Load(), Errors: errs}
	enc, _ := json.Marshal(res)
	fmt.Println("RESULT " + string(enc))
}

func rtmpViewer(ctx context.Context, raw string, n, connected *atomic.Int64) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	c := &gortmplib.Client{URL: u}
	if err := c.Initialize(ctx); err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()
	r := &gortmplib.Reader{Conn: c}
	if err := r.Initialize(); err != nil {
		return err
	}
	// gortmplib needs a callback per track; bytes are counted on the connection.
	for _, t := range r.Tracks() {
		switch t.Codec.(type) {
		case *rtmpcodecs.H264:
			r.OnDataH264(t, func(time.Duration, time.Duration, [][]byte) {})
		case *rtmpcodecs.MPEG4Audio:
			r.OnDataMPEG4Audio(t, func(time.Duration, []byte) {})
		default:
			return fmt.Errorf("unexpected codec %T", t.Codec)
		}
	}
	connected.Add(1)
	last := c.BytesReceived()
	for {
		if err := r.Read(); err != nil {
			n.Add(int64(c.BytesReceived() - last))
			return err
		}
		now := c.BytesReceived()
		n.Add(int64(now - last))
		last = now
	}
}

func rtspViewer(ctx context.Context, raw string, proto gortsplib.Protocol, n, connected *atomic.Int64) error {
	u, err := base.ParseURL(raw)
	if err != nil {
		return err
	}
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &proto}
	if err := c.Start(); err != nil {
		return err
	}
	defer c.Close()
	desc, _, err := c.Describe(u)
	if err != nil {
		return err
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		return err
	}
	c.OnPacketRTPAny(func(_ *description.Media, _ format.Format, pkt *rtp.Packet) {
		n.Add(int64(pkt.MarshalSize()))
	})
	if _, err := c.Play(nil); err != nil {
		return err
	}
	connected.Add(1)
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-done:
		return err
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS is VmHWM of this process in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v << 10
			}
		}
	}
	return 0
}
