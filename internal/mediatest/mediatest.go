// Package mediatest runs real ffmpeg/ffprobe in tests: publishers, frame counters and timestamp probes.
package mediatest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/poll"
	"github.com/peergate/peergate/origin/media"
)

// Install is the command that provides ffmpeg and ffprobe on Debian.
const Install = "apt-get install -y ffmpeg"

// Tool returns the path of ffmpeg or ffprobe, failing the test with the install command if missing.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found in PATH: %s", name, Install)
	}
	return p
}

// Demo is the path of the committed demo clip (origin/testdata/demo.ts).
func Demo(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "origin", "testdata", "demo.ts")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("demo clip: %v (regenerate with origin/testdata/make-demo.sh)", err)
	}
	return p
}

// Proc is a running ffmpeg; it is killed at test cleanup at the latest.
type Proc struct {
	cmd    *exec.Cmd
	stderr *syncBuf
	done   chan struct{}
	err    error
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil // bounded: keep the first MiB
	}
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start runs a tool with args until it exits or the test ends.
func Start(t testing.TB, tool string, args ...string) *Proc {
	t.Helper()
	p := &Proc{stderr: &syncBuf{}, done: make(chan struct{})}
	p.cmd = exec.Command(Tool(t, tool), args...)
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", tool, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.Stop)
	return p
}

// Stop kills the process and waits for it.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Wait waits up to d for the process to exit; ok is false on timeout.
func (p *Proc) Wait(d time.Duration) (err error, ok bool) {
	select {
	case <-p.done:
		return p.err, true
	case <-time.After(d):
		return nil, false
	}
}

// Done is closed when the process exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Output is what the process wrote to stderr and stdout so far.
func (p *Proc) Output() string { return p.stderr.String() }

// Source describes the synthetic picture and tone a publisher sends.
type Source struct {
	Size     string        // "640x360" by default
	Rate     int           // frames per second, 25 by default
	Duration time.Duration // 0: until stopped
	GOP      int           // key frame interval in frames, Rate by default
	NoAudio  bool
	Video    string // ffmpeg video encoder: "libx264" (default) or "libx265"
	Audio    string // ffmpeg audio encoder: "aac" (default) or "libopus"
}

// SourceArgs are ffmpeg input and encoder arguments for a real-time testsrc2 + sine source,
// H.264 (libx264, B-frames on) and AAC by default, to be followed by output options and the URL.
func SourceArgs(s Source) []string {
	if s.Video == "" {
		s.Video = "libx264"
	}
	if s.Audio == "" {
		s.Audio = "aac"
	}
	if s.Size == "" {
		s.Size = "640x360"
	}
	if s.Rate == 0 {
		s.Rate = 25
	}
	if s.GOP == 0 {
		s.GOP = s.Rate
	}
	args := []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%s:rate=%d", s.Size, s.Rate)}
	if !s.NoAudio {
		rate := "44100"
		if s.Audio == "libopus" {
			rate = "48000"
		}
		args = append(args, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate="+rate)
	}
	if s.Duration > 0 {
		args = append(args, "-t", strconv.FormatFloat(s.Duration.Seconds(), 'f', 2, 64))
	}
	args = append(args, "-c:v", s.Video, "-preset", "ultrafast", "-pix_fmt", "yuv420p",
		"-g", strconv.Itoa(s.GOP), "-bf", "2", "-b:v", "600k")
	if s.Video == "libx265" {
		args = append(args, "-x265-params", "log-level=error")
	}
	if !s.NoAudio {
		args = append(args, "-c:a", s.Audio, "-b:a", "64k", "-ac", "2")
	}
	return args
}

// PublishRTMP starts ffmpeg publishing the source to an rtmp:// URL.
func PublishRTMP(t testing.TB, url string, s Source) *Proc {
	t.Helper()
	return Start(t, "ffmpeg", append(SourceArgs(s), "-f", "flv", url)...)
}

// PublishRTSP starts ffmpeg publishing the source to an rtsp:// URL over transport ("tcp" or "udp").
func PublishRTSP(t testing.TB, url, transport string, s Source) *Proc {
	t.Helper()
	return Start(t, "ffmpeg", append(SourceArgs(s), "-f", "rtsp", "-rtsp_transport", transport, url)...)
}

// Probe is what a reader decoded from the first video stream of a stream.
type Probe struct {
	VideoCodec string
	Width      int
	Height     int
	Frames     int    // decoded video frames
	Log        string // what ffprobe reported at -v error (decoder complaints)
}

// Corrupt reports decoder complaints that mean damaged pictures (missing slices or
// references) rather than the start-up notes of a reader that joined mid-GOP (RTSP).
func (p Probe) Corrupt() bool {
	return strings.Contains(p.Log, "concealing") || strings.Contains(p.Log, "error while decoding")
}

// ReadOptions tune ProbeStream and PacketTimes.
type ReadOptions struct {
	RTSPTransport string        // "tcp" or "udp" for rtsp:// URLs
	Frames        int           // video frames wanted (ProbeStream reads twice as many packets) or packets to read (PacketTimes); 50 by default
	Timeout       time.Duration // 20 s by default
}

func (o *ReadOptions) defaults() {
	if o.Frames == 0 {
		o.Frames = 50
	}
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Second
	}
}

func inputArgs(o ReadOptions) []string {
	args := []string{"-hide_banner", "-v", "error"}
	if o.RTSPTransport != "" {
		args = append(args, "-rtsp_transport", o.RTSPTransport)
	}
	return args
}

// ProbeStream decodes o.Frames video frames of url with ffprobe (-count_frames) and reports
// codec, resolution and the number of frames decoded.
func ProbeStream(ctx context.Context, url string, o ReadOptions) (Probe, error) {
	o.defaults()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	// Only the video stream is selected so -read_intervals counts video packets; twice as
	// many packets as frames leaves room for an RTSP reader joining mid-GOP (its first
	// frames up to the next key frame do not decode) and for the B-frame delay.
	args := append(inputArgs(o), "-select_streams", "v:0", "-count_frames", "-read_intervals", fmt.Sprintf("%%+#%d", 2*o.Frames),
		"-show_entries", "stream=codec_type,codec_name,width,height,nb_read_frames", "-of", "json", url)
	cmd := exec.CommandContext(ctx, "ffprobe", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return Probe{}, fmt.Errorf("ffprobe not found: %s", Install)
		}
		return Probe{}, fmt.Errorf("ffprobe %s: %w: %s", url, err, strings.TrimSpace(stderr.String()))
	}
	var res struct {
		Streams []struct {
			CodecType    string `json:"codec_type"`
			CodecName    string `json:"codec_name"`
			Width        int    `json:"width"`
			Height       int    `json:"height"`
			NbReadFrames string `json:"nb_read_frames"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return Probe{}, fmt.Errorf("ffprobe output: %w: %s", err, out)
	}
	p := Probe{Log: strings.TrimSpace(stderr.String())}
	for _, s := range res.Streams {
		switch s.CodecType {
		case "video":
			if p.VideoCodec == "" {
				p.VideoCodec, p.Width, p.Height = s.CodecName, s.Width, s.Height
				p.Frames, _ = strconv.Atoi(s.NbReadFrames)
			}
		}
	}
	return p, nil
}

// PacketTimes reads o.Frames video packets of url with ffprobe and returns their DTS in
// seconds, or their PTS where the demuxer gives no DTS (RTP).
func PacketTimes(ctx context.Context, url string, o ReadOptions) ([]float64, error) {
	o.defaults()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	args := append(inputArgs(o), "-select_streams", "v:0", "-read_intervals", fmt.Sprintf("%%+#%d", o.Frames),
		"-show_entries", "packet=dts_time,pts_time", "-of", "csv=p=0", url)
	cmd := exec.CommandContext(ctx, "ffprobe", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ffprobe %s: %w: %s", url, err, strings.TrimSpace(stderr.String()))
	}
	var ts []float64
	for _, l := range strings.Fields(string(out)) {
		// csv columns come in ffprobe's field order: pts_time,dts_time
		f := strings.Split(l, ",")
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			v, err = strconv.ParseFloat(f[0], 64)
		}
		if err == nil {
			ts = append(ts, v)
		}
	}
	return ts, nil
}

// Monotonic returns the index of the first value not greater than its predecessor, or -1.
func Monotonic(ts []float64) int {
	for i := 1; i < len(ts); i++ {
		if ts[i] <= ts[i-1] {
			return i
		}
	}
	return -1
}

// Eventually, EventuallyEvery and EventuallyT are internal/poll's Until, Every and T, kept
// under these names for the media tests that use them.
func Eventually(d time.Duration, cond func() bool) bool { return poll.Until(d, cond) }

// EventuallyEvery is poll.Every.
func EventuallyEvery(d, every time.Duration, cond func() bool) bool {
	return poll.Every(d, every, cond)
}

// EventuallyT is poll.T.
func EventuallyT(t testing.TB, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	poll.T(t, d, cond, format, args...)
}

// WaitLive waits up to 15 s until NAME is live in tbl and has taken media from its publisher p.
func WaitLive(t testing.TB, tbl *media.Table, name string, p *Proc) {
	t.Helper()
	ok := Eventually(15*time.Second, func() bool {
		st := tbl.Get(name)
		return st != nil && st.IngressBytes() > 0
	})
	if !ok {
		t.Fatalf("%s never went live; ffmpeg said: %s", name, p.Output())
	}
}
