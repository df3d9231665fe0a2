package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/redistest"
)

// The players and encoders TestPlayersThroughGateway runs, and the Debian packages that have
// them (.ci/tools installs the same list).
const playersInstall = "apt-get install -y ffmpeg gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad " +
	"gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp mpv vlc-bin vlc-plugin-base rtmpdump"

var (
	playerCommands = []string{"ffmpeg", "ffprobe", "gst-launch-1.0", "gst-inspect-1.0", "mpv", "cvlc", "rtmpdump"}
	gstElements    = []string{"playbin", "videotestsrc", "videoconvert", "rtspsrc", "rtph264depay", "flvdemux", "souphttpsrc",
		"rtmp2src", "hlsdemux", "tsdemux", "h264parse", "checksumsink", "x264enc", "avdec_h264", "rtspclientsink"}
)

// matrixFile is where PEERGATE_WRITE_MATRIX=1 makes TestPlayersThroughGateway write its
// matrix (relative to e2e/, where go test runs the package); README.md quotes it.
const matrixFile = "testdata/interop-matrix.md"

// wantFrames is how many decoded video frames every row must show.
const wantFrames = 50

// requirePlayers fails the test, naming the install command, when a player or a GStreamer
// element is missing: the matrix is never silently thinner than its table.
func requirePlayers(t *testing.T) {
	t.Helper()
	var missing []string
	for _, c := range playerCommands {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if _, err := exec.LookPath("gst-inspect-1.0"); err == nil {
		for _, e := range gstElements {
			if exec.Command("gst-inspect-1.0", "--exists", e).Run() != nil {
				missing = append(missing, "gstreamer element "+e)
			}
		}
	}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("runuser"); err != nil {
			missing = append(missing, "runuser (util-linux), to run cvlc unprivileged")
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing %s: %s (or run .ci/tools as root)", strings.Join(missing, ", "), playersInstall)
	}
}

// decoded is what a client showed: video frames decoded and the picture size.
type decoded struct {
	frames, width, height int
}

// expect is who must serve a row: an origin id and the picture size that origin sends.
type expect struct {
	origin        string
	width, height int
}

// row is one line of the matrix: a real client doing one thing through the gateway.
type row struct {
	client, proto string
	url           string // as the client got it (real addresses)
	command       string // the exact command line (or Go call) the test ran
	listener      string // the gateway listener the client talks to: http, rtsp or rtmp
	name          string // the NAME it asks for
	publish       bool   // a publisher (its gateway log line is the publish session's)
	want          expect
	run           func(ctx context.Context) (decoded, error)

	// results
	path   string // redirected, relayed, failed (...)
	origin string // the origin the gateway's log line names
	got    decoded
	err    error
	took   time.Duration
}

func (r *row) failed() bool { return r.err != nil }

// TestPlayersThroughGateway: one redis-server, two real origins looping real video (origin 1
// `demo`, the 640x360 demo clip; origin 2 `live/demo2`, a 320x240 clip made here, so the picture
// size tells which origin served) and one real gateway. Every row runs a real player
// (ffprobe, gst-launch-1.0, mpv, cvlc, rtmpdump, the gortsplib and gortmplib clients) or
// publisher (ffmpeg over RTMP and RTSP, GStreamer rtspclientsink) against the GATEWAY, and
// passes when the client decoded at least 50 video frames at the size of the origin that must
// serve it, and the gateway's log line for that connection says how (redirected or relayed)
// and to which origin. Rows run in parallel, except that two rows asking the same gateway
// listener for the same NAME never overlap, so each row's log lines are its own. The matrix
// is logged; with PEERGATE_WRITE_MATRIX=1 it is also written to e2e/testdata/interop-matrix.md.
func TestPlayersThroughGateway(t *testing.T) {
	t.Parallel()
	requirePlayers(t)
	began := time.Now()
	rs := redistest.Standalone(t)
	clip2 := makeClip(t, "320x240")
	// This test is about clients, not failover: a TTL long enough that a loaded machine (every
	// row runs real decoders) never lets an origin's record lapse.
	env := []string{"PEERGATE_LISTEN_RTSP_UDP=127.0.0.1:0", "PEERGATE_HEARTBEAT_INTERVAL=500ms", "PEERGATE_HEARTBEAT_TTL=10s"}
	o1 := startMediaOrigin(t, "origin1", rs.URL(), "streams:\n  - name: demo\n    source: "+mediatest.Demo(t)+"\n", env...)
	o2 := startMediaOrigin(t, "origin2", rs.URL(), "streams:\n  - name: live/demo2\n    source: "+clip2+"\n", env...)
	// The gateway's RTMP port is chosen here: the listener comes with the RTMP work, and a row
	// must fail (connection refused), not the whole test, while it is missing.
	gwRTMP := freeAddr(t)
	gw := start(t, "gateway", "gateway", "", []string{
		"PEERGATE_CLUSTER_KEY=" + clusterKey,
		"PEERGATE_REDIS_URL=" + rs.URL(),
		"PEERGATE_LISTEN_HTTP=127.0.0.1:0",
		"PEERGATE_LISTEN_RTSP=127.0.0.1:0",
		"PEERGATE_LISTEN_RTMP=" + gwRTMP,
		"PEERGATE_LISTEN_ADMIN=127.0.0.1:0",
	}, "http", "rtsp", "admin")
	waitReady(t, gw)
	for name, id := range map[string]string{"demo": o1.id, "live/demo2": o2.id} {
		var last map[string]string
		if !mediatest.Eventually(20*time.Second, func() bool {
			last, _ = streamOrigins(gw, name)
			return len(last) == 1 && last[id] == "running"
		}) {
			t.Fatalf("%s: gateway lists %v, want only %s running", name, last, id)
		}
	}
	t.Logf("cluster up in %v", time.Since(began).Round(time.Millisecond))

	m := &matrix{gw: gw, keys: map[string]*sync.Mutex{}, slots: make(chan struct{}, 4)}
	gwHTTP, gwRTSP := gw.addr("http"), gw.addr("rtsp")
	// PEERGATE_INTEROP_DIRECT=1 points every row at the origin that must serve it instead of
	// the gateway (publishers at origin 2): it shows each command line works, so that a row
	// failing through the gateway fails because of the gateway.
	direct := os.Getenv("PEERGATE_INTEROP_DIRECT") == "1"
	m.direct = direct
	type hosts struct{ http, rtsp, rtmp string }
	via := func(o *mediaOrigin) hosts {
		if direct {
			return hosts{o.http, o.rtsp, o.rtmp}
		}
		return hosts{gwHTTP, gwRTSP, gwRTMP}
	}
	h1, h2, hp := via(o1), via(o2), via(o2)
	origin1 := expect{o1.id, 640, 360}
	origin2 := expect{o2.id, 320, 240}
	dir := t.TempDir()

	var rows []*row
	add := func(r *row) *row { rows = append(rows, r); return r }
	// ffprobe: every protocol.
	add(ffprobeRow("HLS", "http", "demo", "http://"+h1.http+"/demo/index.m3u8", "", origin1))
	add(ffprobeRow("HTTP MPEG-TS", "http", "live/demo2", "http://"+h2.http+"/live/demo2/mpegts", "", origin2))
	add(ffprobeRow("RTSP/TCP", "rtsp", "demo", "rtsp://"+h1.rtsp+"/demo", "tcp", origin1))
	add(ffprobeRow("RTSP/UDP", "rtsp", "live/demo2", "rtsp://"+h2.rtsp+"/live/demo2", "udp", origin2))
	add(ffprobeRow("RTMP", "rtmp", "live/demo2", "rtmp://"+h2.rtmp+"/live/demo2", "", origin2))
	add(ffprobeRow("RTMP", "rtmp", "demo", "rtmp://"+h1.rtmp+"/static/demo", "", origin1))
	// GStreamer.
	add(gstRow("rtspsrc RTSP/TCP", "rtsp", "live/demo2", "rtsp://"+h2.rtsp+"/live/demo2", origin2,
		"rtspsrc location=%s protocols=tcp ! application/x-rtp,media=video ! rtph264depay ! h264parse ! avdec_h264 output-corrupt=false ! "+gstTail))
	add(gstRow("rtspsrc RTSP/UDP", "rtsp", "demo", "rtsp://"+h1.rtsp+"/demo", origin1,
		"rtspsrc location=%s protocols=udp ! application/x-rtp,media=video ! rtph264depay ! h264parse ! avdec_h264 output-corrupt=false ! "+gstTail))
	add(gstRow("playbin HLS", "http", "live/demo2", "http://"+h2.http+"/live/demo2/index.m3u8", origin2,
		`playbin uri=%s flags=video audio-sink=fakesink video-sink="`+gstTail+`"`))
	add(gstRow("rtmp2src RTMP", "rtmp", "demo", "rtmp://"+h1.rtmp+"/static/demo", origin1,
		"rtmp2src location=%s ! flvdemux name=d d.video ! queue ! h264parse ! avdec_h264 output-corrupt=false ! "+gstTail))
	// mpv.
	add(mpvRow("HLS", "http", "demo", "http://"+h1.http+"/demo/index.m3u8", origin1, dir))
	add(mpvRow("RTSP", "rtsp", "live/demo2", "rtsp://"+h2.rtsp+"/live/demo2", origin2, dir))
	add(mpvRow("RTMP", "rtmp", "live/demo2", "rtmp://"+h2.rtmp+"/live/demo2", origin2, dir))
	// rtmpdump.
	add(rtmpdumpRow("rtmp", "demo", "rtmp://"+h1.rtmp+"/static/demo", origin1, dir))
	// VLC (Debian's has no live555, so no RTSP).
	vlcDir := vlcDir(t)
	add(vlcRow("HLS", "http", "live/demo2", "http://"+h2.http+"/live/demo2/index.m3u8", origin2, vlcDir))
	add(vlcRow("HTTP MPEG-TS", "http", "demo", "http://"+h1.http+"/demo/mpegts", origin1, vlcDir))
	add(vlcRow("RTMP", "rtmp", "live/demo2", "rtmp://"+h2.rtmp+"/live/demo2", origin2, vlcDir))
	// Go clients.
	add(gortsplibRow("rtsp://"+h1.rtsp+"/demo", "demo", origin1))
	add(gortmplibRow("rtmp://"+h2.rtmp+"/live#demo2", "live/demo2", origin2))

	var wg sync.WaitGroup
	for _, r := range rows {
		wg.Go(func() { m.play(t, r) })
	}

	// Publishers: each pushes to the gateway, which relays it to the origin it places the
	// NAME on; then the stream plays back through the gateway over HLS, RTSP and RTMP.
	pubs := []*publisher{
		{client: "ffmpeg", proto: "RTMP publish", listener: "rtmp", name: "live/pub-ffmpeg-rtmp", size: "480x270",
			url: "rtmp://" + hp.rtmp + "/live/pub-ffmpeg-rtmp"},
		{client: "ffmpeg", proto: "RTSP publish (UDP first, TCP on 461)", listener: "rtsp", name: "live/pub-ffmpeg-rtsp", size: "352x288",
			url: "rtsp://" + hp.rtsp + "/live/pub-ffmpeg-rtsp"},
		{client: "gst-launch-1.0 rtspclientsink", proto: "RTSP publish (TCP)", listener: "rtsp", name: "live/pub-gst-rtsp", size: "384x216",
			url: "rtsp://" + hp.rtsp + "/live/pub-gst-rtsp"},
	}
	for _, p := range pubs {
		pr := add(&row{client: p.client, proto: p.proto, url: p.url, listener: p.listener, name: p.name, publish: true})
		p.row = pr
		for _, pl := range []struct{ proto, listener, url, transport string }{
			{"HLS", "http", "http://" + hp.http + "/" + p.name + "/index.m3u8", ""},
			{"RTSP/TCP", "rtsp", "rtsp://" + hp.rtsp + "/" + p.name, "tcp"},
			{"RTMP", "rtmp", "rtmp://" + hp.rtmp + "/" + p.name, ""},
		} {
			p.plays = append(p.plays, add(ffprobeRow(pl.proto, pl.listener, p.name, pl.url, pl.transport, expect{})))
		}
	}
	for _, p := range pubs {
		wg.Go(func() { m.publish(t, gw, p) })
	}
	wg.Wait()
	took := time.Since(began)

	table := matrixTable(rows, map[string]string{
		gwHTTP: "gateway:8080", gwRTSP: "gateway:8554", gwRTMP: "gateway:1935",
		o1.http: "origin1:8081", o1.rtsp: "origin1:8555", o1.rtmp: "origin1:1936",
		o2.http: "origin2:8082", o2.rtsp: "origin2:8556", o2.rtmp: "origin2:1937",
		dir: "/tmp/out", vlcDir: "/tmp/vlc-out", // vlc-out: a directory the user cvlc runs as may write
	})
	t.Logf("interop matrix (%d rows, %v):\n%s", len(rows), took.Round(time.Second), table)
	if os.Getenv("PEERGATE_WRITE_MATRIX") == "1" {
		head := "<!-- Written by TestPlayersThroughGateway: PEERGATE_WRITE_MATRIX=1 go test -count=1 -run TestPlayersThroughGateway ./e2e/ -->\n\n"
		if err := os.WriteFile(matrixFile, []byte(head+table), 0o644); err != nil {
			t.Errorf("writing %s: %v", matrixFile, err)
		} else {
			t.Logf("wrote %s", matrixFile)
		}
	}
	for _, r := range rows {
		if r.failed() {
			t.Errorf("%s %s %s: %v\n  command: %s", r.client, r.proto, r.url, r.err, r.command)
		}
	}
}

// matrix runs rows: at most cap(slots) at once, and one at a time per (listener, NAME), so
// the gateway log lines that appear while a row runs belong to it.
type matrix struct {
	gw     *proc
	direct bool // rows ask the origins, not the gateway
	mu     sync.Mutex
	keys   map[string]*sync.Mutex
	slots  chan struct{}
}

func (m *matrix) key(r *row) *sync.Mutex {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := r.listener + " " + r.name
	if m.keys[k] == nil {
		m.keys[k] = &sync.Mutex{}
	}
	return m.keys[k]
}

// play runs one player row and judges it.
func (m *matrix) play(t *testing.T, r *row) {
	k := m.key(r)
	k.Lock()
	defer k.Unlock()
	// The key is taken before a slot, so a row holding a slot never waits for a key.
	m.slots <- struct{}{}
	from := m.gw.logCount()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	r.got, r.err = r.run(ctx)
	cancel()
	if r.err != nil && r.got.frames == 0 {
		// A player that decoded nothing at all gets one more try, logged: on a machine whose
		// cores are taken by other work a real player sometimes stalls before its first frame
		// (GStreamer's playbin on live HLS). A second failure fails the row.
		t.Logf("%s %s: first attempt failed (%v); trying once more", r.client, r.proto, r.err)
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		r.got, r.err = r.run(ctx)
		cancel()
	}
	r.took = time.Since(start)
	<-m.slots
	if m.direct {
		r.path, r.origin = "direct", r.want.origin
	} else {
		r.path, r.origin = m.gatewayPath(r, from, r.err == nil)
	}
	r.judge()
	t.Logf("%-40s %-14s %-12s %3d frames %dx%d from %-8s in %v err=%v", r.client, r.proto, r.path, r.got.frames, r.got.width, r.got.height,
		r.origin, r.took.Round(time.Millisecond), r.err)
}

// judge turns what the client and the gateway log said into the row's verdict.
func (r *row) judge() {
	if r.err != nil {
		return
	}
	switch {
	case r.got.frames < wantFrames:
		r.err = fmt.Errorf("decoded %d frames, want >= %d", r.got.frames, wantFrames)
	case r.got.width != r.want.width || r.got.height != r.want.height:
		r.err = fmt.Errorf("decoded %dx%d, want %dx%d (what %s sends)", r.got.width, r.got.height, r.want.width, r.want.height, r.want.origin)
	case strings.HasPrefix(r.path, "failed"):
		r.err = fmt.Errorf("the gateway's log says %s", r.path)
	case r.origin != r.want.origin:
		r.err = fmt.Errorf("the gateway sent it to %q, want %s", r.origin, r.want.origin)
	case r.listener != "rtmp" && r.path != "redirected" && r.path != "direct":
		r.err = fmt.Errorf("path %s, want redirected (HTTP and RTSP players follow a 302)", r.path)
	}
}

// gatewayPath reads the gateway's log lines for r (from index from on) and says how the
// gateway handled it: redirected or relayed, and to which origin. Lines are written when a
// connection ends, so it polls a little (longer when the client succeeded and a line must come).
func (m *matrix) gatewayPath(r *row, from int, expectLine bool) (path, origin string) {
	wait := 2 * time.Second
	if expectLine {
		wait = 8 * time.Second
	}
	var recs []map[string]any
	mediatest.Eventually(wait, func() bool {
		lines, _ := m.gw.logLines(from)
		recs = recs[:0]
		for _, l := range lines {
			var rec map[string]any
			if json.Unmarshal([]byte(l), &rec) != nil || !lineFor(rec, r) {
				continue
			}
			recs = append(recs, rec)
		}
		return len(recs) > 0
	})
	return classify(recs)
}

// lineFor says whether a gateway log line is about r's connection: same listener, same NAME,
// and a publish session exactly when r is a publisher.
func lineFor(rec map[string]any, r *row) bool {
	msg, _ := rec["msg"].(string)
	if l, _ := rec["listener"].(string); l != r.listener && !strings.HasPrefix(msg, r.listener+" ") {
		return false
	}
	name, _ := rec["name"].(string)
	p, _ := rec["path"].(string)
	if name != r.name && !strings.HasPrefix(p, "/"+r.name+"/") {
		return false
	}
	return isPublishLine(rec, msg) == r.publish
}

// isPublishLine: the RTMP listener logs a role (play, publish); the RTSP listener redirects
// players and relays only publishers, so its relayed connections are publishers.
func isPublishLine(rec map[string]any, msg string) bool {
	if role, ok := rec["role"].(string); ok && role != "" {
		return role == "publish"
	}
	if strings.HasPrefix(msg, "rtsp ") {
		mode, _ := rec["mode"].(string)
		return mode == "relay"
	}
	return strings.Contains(msg, "publish")
}

// classify turns a connection's log lines into relayed / redirected / failed (outcome). A
// relay the client ended counts (the test kills players once they have their frames: the
// gateway may log that as client_gone).
func classify(recs []map[string]any) (path, origin string) {
	if len(recs) == 0 {
		return "failed (no gateway log line)", ""
	}
	outcome := ""
	for _, rec := range recs {
		msg, _ := rec["msg"].(string)
		mode, _ := rec["mode"].(string)
		o, _ := rec["outcome"].(string)
		id, _ := rec["origin"].(string)
		relay := mode == "relay" || strings.Contains(msg, "relay")
		switch {
		case relay && (o == "ok" || o == "client_gone"):
			return "relayed", id
		case !relay && o == "ok":
			return "redirected", id
		case outcome == "":
			outcome = o
		}
	}
	if outcome == "" {
		outcome = "no outcome"
	}
	return "failed (" + outcome + ")", ""
}

// publisher is a real encoder pushing to the gateway, and the rows that play it back.
type publisher struct {
	client, proto, listener, name, size, url string
	row                                      *row
	plays                                    []*row
}

// publish starts the publisher, waits until the gateway lists its NAME running on one origin
// (the origin the gateway placed it on), plays it back, stops it and reads the gateway's log
// line for the publish session.
func (m *matrix) publish(t *testing.T, gw *proc, p *publisher) {
	r := p.row
	w, h := sizeOf(p.size)
	from := gw.logCount()
	start := time.Now()
	var pub *mediatest.Proc
	switch {
	case p.client == "ffmpeg" && p.listener == "rtmp":
		args := append(mediatest.SourceArgs(mediatest.Source{Size: p.size}), "-f", "flv", p.url)
		r.command = "ffmpeg " + shellJoin(args)
		pub = mediatest.Start(t, "ffmpeg", args...)
	case p.client == "ffmpeg":
		// No -rtsp_transport: ffmpeg tries UDP first and falls back to TCP on 461.
		args := append(mediatest.SourceArgs(mediatest.Source{Size: p.size}), "-f", "rtsp", p.url)
		r.command = "ffmpeg " + shellJoin(args)
		pub = mediatest.Start(t, "ffmpeg", args...)
	default:
		// rtspclientsink does not fall back to TCP on 461 (it stops: "Could not setup
		// transport"), so it asks for TCP, which is what the gateway relays.
		pipe := fmt.Sprintf("videotestsrc is-live=true ! video/x-raw,width=%d,height=%d,framerate=25/1 ! "+
			"x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=500 ! video/x-h264,profile=constrained-baseline ! "+
			"rtspclientsink location=%s protocols=tcp", w, h, p.url)
		r.command = "gst-launch-1.0 " + pipe
		pub = mediatest.Start(t, "gst-launch-1.0", shellFields(pipe)...)
	}
	placed := ""
	var last map[string]string
	ok := mediatest.Eventually(20*time.Second, func() bool {
		select {
		case <-pub.Done():
			return true
		default:
		}
		last, _ = streamOrigins(gw, p.name)
		for id, st := range last {
			if len(last) == 1 && st == "running" {
				placed = id
			}
		}
		return placed != ""
	})
	fail := func(err error) {
		r.err = err
		for _, pl := range p.plays {
			pl.path, pl.err = "failed (not published)", fmt.Errorf("not played: the publisher failed")
		}
	}
	switch {
	case placed == "" && !ok:
		fail(fmt.Errorf("the gateway never listed %s running on one origin (lists %v); publisher said: %s", p.name, last, tail(pub.Output())))
	case placed == "":
		fail(fmt.Errorf("the publisher exited: %s", tail(pub.Output())))
	}
	if placed != "" {
		t.Logf("%s placed on %s %v after the publisher started", p.name, placed, time.Since(start).Round(time.Millisecond))
		var wg sync.WaitGroup
		for _, pl := range p.plays {
			pl.want = expect{placed, w, h}
			wg.Go(func() { m.play(t, pl) })
		}
		wg.Wait()
	}
	pub.Stop()
	r.took = time.Since(start)
	r.want.origin = placed
	if m.direct {
		r.path, r.origin = "direct", placed
	} else {
		r.path, r.origin = m.gatewayPath(r, from, placed != "")
	}
	for _, pl := range p.plays {
		if pl.err == nil && (r.got.frames == 0 || pl.got.frames < r.got.frames) {
			r.got = pl.got // the publish row shows the fewest frames any of its plays decoded
		}
	}
	if r.err == nil {
		switch {
		case r.path != "relayed" && r.path != "direct":
			r.err = fmt.Errorf("path %s, want relayed (no publisher follows a redirect)", r.path)
		case r.origin != placed:
			r.err = fmt.Errorf("the gateway's log says it relayed to %q, but %s runs on %s", r.origin, p.name, placed)
		}
	}
	t.Logf("%-40s %-14s %-12s placed on %s, relayed to %q, err=%v", r.client, r.proto, r.path, placed, r.origin, r.err)
}

// ---- clients ----

// gstTail decodes to raw I420 and prints one checksum line per frame (checksumsink); the
// test counts those lines and stops the pipeline at 50. (identity eos-after=N answers EOS
// upstream, which a demuxer that still feeds its audio branch never turns into the
// pipeline's EOS: playbin on HLS would not exit.)
const gstTail = "videoconvert ! video/x-raw,format=I420 ! checksumsink"

var (
	// Not anchored: gst-launch's "buffering... N%  " notes end without a newline.
	checksumLine = regexp.MustCompile(`[0-9]+:[0-9]{2}:[0-9]{2}\.[0-9]+ [0-9a-f]{40}`)
	gstSize      = regexp.MustCompile(`video/x-raw, format=\(string\)I420, width=\(int\)([0-9]+), height=\(int\)([0-9]+)`)
)

func ffprobeRow(proto, listener, name, u, transport string, want expect) *row {
	o := mediatest.ReadOptions{RTSPTransport: transport, Frames: wantFrames, Timeout: 40 * time.Second}
	args := []string{"-hide_banner", "-v", "error"}
	if transport != "" {
		args = append(args, "-rtsp_transport", transport)
	}
	args = append(args, "-select_streams", "v:0", "-count_frames", "-read_intervals", fmt.Sprintf("%%+#%d", 2*wantFrames),
		"-show_entries", "stream=codec_type,codec_name,width,height,nb_read_frames", "-of", "json", u)
	return &row{client: "ffprobe", proto: proto, url: u, listener: listener, name: name, want: want,
		command: "ffprobe " + shellJoin(args),
		run: func(ctx context.Context) (decoded, error) {
			p, err := mediatest.ProbeStream(ctx, u, o)
			if err != nil {
				return decoded{}, err
			}
			if p.VideoCodec != "h264" {
				return decoded{}, fmt.Errorf("decoded %q, want h264", p.VideoCodec)
			}
			return decoded{p.Frames, p.Width, p.Height}, nil
		}}
}

func gstRow(what, listener, name, u string, want expect, pipeline string) *row {
	pipe := fmt.Sprintf(pipeline, u)
	client, proto, _ := strings.Cut(what, " ")
	return &row{client: "gst-launch-1.0 " + client, proto: proto, url: u, listener: listener, name: name, want: want,
		command: "gst-launch-1.0 -v " + pipe,
		run: func(ctx context.Context) (decoded, error) {
			var d decoded
			out, err := runTool(ctx, append([]string{"gst-launch-1.0", "-v"}, shellFields(pipe)...), 0, func(line string) bool {
				if n := len(checksumLine.FindAllStringIndex(line, -1)); n > 0 {
					d.frames += n
				} else if m := gstSize.FindStringSubmatch(line); m != nil {
					d.width, d.height = atoi(m[1]), atoi(m[2])
				}
				return d.frames >= wantFrames
			})
			if d.frames >= wantFrames {
				return d, nil
			}
			return d, fmt.Errorf("%d frames: %v: %s", d.frames, err, tail(out))
		}}
}

func mpvRow(proto, listener, name, u string, want expect, dir string) *row {
	file := filepath.Join(dir, "mpv-"+strings.ReplaceAll(proto+"-"+name, "/", "_")+".nut")
	args := []string{"mpv", "--no-config", fmt.Sprintf("--frames=%d", wantFrames), "--o=" + file, "--of=nut", "--ovc=rawvideo", "--no-audio", u}
	return &row{client: "mpv", proto: proto, url: u, listener: listener, name: name, want: want,
		command: shellJoin(args),
		run: func(ctx context.Context) (decoded, error) {
			out, err := runTool(ctx, args, 0, nil)
			return fileFrames(ctx, file, out, err)
		}}
}

func rtmpdumpRow(listener, name, u string, want expect, dir string) *row {
	file := filepath.Join(dir, "rtmpdump-"+strings.ReplaceAll(name, "/", "_")+".flv")
	args := []string{"rtmpdump", "-q", "-r", u, "--live", "-o", file}
	return &row{client: "rtmpdump", proto: "RTMP", url: u, listener: listener, name: name, want: want,
		command: shellJoin(args) + "  # stopped after 5 s",
		run: func(ctx context.Context) (decoded, error) {
			// rtmpdump --stop counts from timestamp 0 and a live stream's keep growing: stop it here.
			out, err := runTool(ctx, args, 5*time.Second, nil)
			return fileFrames(ctx, file, out, err)
		}}
}

// vlcDir is a directory the unprivileged user cvlc runs as can write.
func vlcDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "peergate-vlc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	return d
}

func vlcRow(proto, listener, name, u string, want expect, dir string) *row {
	file := filepath.Join(dir, "vlc-"+strings.ReplaceAll(proto+"-"+name, "/", "_")+".ts")
	file = strings.ReplaceAll(file, " ", "_")
	args := []string{"cvlc", "-q", "--no-audio", "--play-and-exit", "--run-time=5", u, "--sout", "#std{access=file,mux=ts,dst=" + file + "}"}
	if os.Geteuid() == 0 {
		args = append([]string{"runuser", "-u", "nobody", "--"}, args...) // VLC refuses to run as root
	}
	return &row{client: "cvlc", proto: proto, url: u, listener: listener, name: name, want: want,
		command: shellJoin(args),
		run: func(ctx context.Context) (decoded, error) {
			out, err := runTool(ctx, args, 0, nil)
			return fileFrames(ctx, file, out, err)
		}}
}

// fileFrames counts the video frames ffprobe decodes from a client's output file.
func fileFrames(ctx context.Context, file, out string, runErr error) (decoded, error) {
	p, err := mediatest.ProbeStream(ctx, file, mediatest.ReadOptions{Frames: 100000, Timeout: 20 * time.Second})
	if err != nil {
		return decoded{}, fmt.Errorf("client: %v: %s; its output file: %v", runErr, tail(out), err)
	}
	d := decoded{p.Frames, p.Width, p.Height}
	if p.Frames < wantFrames && runErr != nil {
		return d, fmt.Errorf("%d frames in its file; client: %v: %s", p.Frames, runErr, tail(out))
	}
	return d, nil
}

// gortsplibRow reads H.264 with the gortsplib client (it follows the DESCRIBE 302, tries UDP
// then TCP) and counts access units from the first random access one.
func gortsplibRow(u, name string, want expect) *row {
	return &row{client: "gortsplib v5.5.0 Client", proto: "RTSP", url: u, listener: "rtsp", name: name, want: want,
		command: "gortsplib.Client{}.Start; Describe(" + u + "); Setup(H.264); Play (Go, in the test)",
		run: func(ctx context.Context) (decoded, error) {
			pu, err := base.ParseURL(u)
			if err != nil {
				return decoded{}, err
			}
			c := &gortsplib.Client{Scheme: pu.Scheme, Host: pu.Host}
			if err := c.Start(); err != nil {
				return decoded{}, err
			}
			defer c.Close()
			desc, _, err := c.Describe(pu)
			if err != nil {
				return decoded{}, err
			}
			var forma *format.H264
			medi := desc.FindFormat(&forma)
			if medi == nil {
				return decoded{}, fmt.Errorf("no H.264 in %v", desc.Medias)
			}
			dec, err := forma.CreateDecoder()
			if err != nil {
				return decoded{}, err
			}
			var mu sync.Mutex
			var d decoded
			d.width, d.height = spsSize(forma.SPS)
			started := false
			enough := make(chan struct{})
			if _, err := c.Setup(desc.BaseURL, medi, 0, 0); err != nil {
				return decoded{}, err
			}
			c.OnPacketRTP(medi, forma, func(pkt *rtp.Packet) {
				au, err := dec.Decode(pkt)
				if err != nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if !started && !h264.IsRandomAccess(au) {
					return
				}
				started = true
				for _, nalu := range au {
					if len(nalu) > 0 && h264.NALUType(nalu[0]&0x1f) == h264.NALUTypeSPS {
						d.width, d.height = spsSize(nalu)
					}
				}
				d.frames++
				if d.frames == wantFrames {
					close(enough)
				}
			})
			if _, err := c.Play(nil); err != nil {
				return decoded{}, err
			}
			failed := make(chan error, 1)
			go func() { failed <- c.Wait() }()
			select {
			case <-enough:
			case err = <-failed:
			case <-ctx.Done():
				err = ctx.Err()
			}
			c.Close()
			mu.Lock()
			defer mu.Unlock()
			return d, err
		}}
}

// gortmplibRow plays with the gortmplib client (rtmp://host/APP#STREAM: the fragment is the
// stream name it sends in play) and counts H.264 access units from the first random access one.
func gortmplibRow(u, name string, want expect) *row {
	return &row{client: "gortmplib v1.0.1 Client", proto: "RTMP", url: u, listener: "rtmp", name: name, want: want,
		command: "gortmplib.Client{URL: " + u + "}.Initialize; Reader.Read (Go, in the test)",
		run: func(ctx context.Context) (decoded, error) {
			pu, err := url.Parse(u)
			if err != nil {
				return decoded{}, err
			}
			c := &gortmplib.Client{URL: pu}
			if err := c.Initialize(ctx); err != nil {
				return decoded{}, err
			}
			defer c.Close()
			deadline, _ := ctx.Deadline()
			_ = c.NetConn().SetReadDeadline(deadline)
			r := &gortmplib.Reader{Conn: c}
			if err := r.Initialize(); err != nil {
				return decoded{}, err
			}
			var d decoded
			started, found := false, false
			// Every track needs a callback: Reader.Read calls the one of each message's track.
			for _, tr := range r.Tracks() {
				switch cd := tr.Codec.(type) {
				case *codecs.H264:
					found = true
					d.width, d.height = spsSize(cd.SPS)
					r.OnDataH264(tr, func(_, _ time.Duration, au [][]byte) {
						if !started && !h264.IsRandomAccess(au) {
							return
						}
						started = true
						d.frames++
					})
				case *codecs.MPEG4Audio:
					r.OnDataMPEG4Audio(tr, func(time.Duration, []byte) {})
				case *codecs.Opus:
					r.OnDataOpus(tr, func(time.Duration, []byte) {})
				default:
					return decoded{}, fmt.Errorf("track %T not expected here", tr.Codec)
				}
			}
			if !found {
				return decoded{}, fmt.Errorf("no H.264 track in %v", r.Tracks())
			}
			for d.frames < wantFrames {
				if err := r.Read(); err != nil {
					return d, err
				}
			}
			return d, nil
		}}
}

func spsSize(b []byte) (int, int) {
	var sps h264.SPS
	if len(b) == 0 || sps.Unmarshal(b) != nil {
		return 0, 0
	}
	return sps.Width(), sps.Height()
}

// ---- processes ----

// runTool runs argv in its own process group until it exits, until stopAfter (if not 0), until
// onLine (called for every line of its output) returns true, or until ctx ends; then it kills
// the whole group (so cvlc under runuser goes too). Stopping on stopAfter or onLine is not an
// error; the end of ctx is. out is the output's first 256 KiB.
func runTool(ctx context.Context, argv []string, stopAfter time.Duration, onLine func(string) bool) (out string, err error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw, err := os.Pipe()
	if err != nil {
		return "", err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return "", err
	}
	pw.Close()
	var buf strings.Builder
	stop := make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		stopped := false
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if buf.Len() < 256<<10 {
				buf.WriteString(line)
				buf.WriteByte('\n')
			}
			if onLine != nil && !stopped && onLine(line) {
				stopped = true
				close(stop)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var timer <-chan time.Time
	if stopAfter > 0 {
		timer = time.After(stopAfter)
	}
	kill := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	select {
	case err = <-exited:
	case <-stop:
		kill()
		<-exited
	case <-timer:
		kill()
		<-exited
	case <-ctx.Done():
		kill()
		<-exited
		err = fmt.Errorf("killed at the row's deadline: %w", ctx.Err())
	}
	kill() // anything the tool left behind in its group
	select {
	case <-read:
	case <-time.After(5 * time.Second):
	}
	pr.Close()
	<-read
	return buf.String(), err
}

// makeClip encodes a 4 s H.264 + AAC MPEG-TS clip of the given size for an origin to loop.
func makeClip(t *testing.T, size string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "clip-"+size+".ts")
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size="+size+":rate=25", "-f", "lavfi", "-i", "sine=frequency=880:sample_rate=44100",
		"-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", "-bf", "0",
		"-c:a", "aac", "-b:a", "64k", "-ac", "2", "-f", "mpegts", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("making the %s clip: %v: %s", size, err, b)
	}
	return out
}

// ---- the matrix ----

func matrixTable(rows []*row, hosts map[string]string) string {
	anon := func(s string) string {
		for a, h := range hosts {
			s = strings.ReplaceAll(s, a, h)
		}
		return s
	}
	var b strings.Builder
	b.WriteString("| client | protocol | URL | path | frames | served by | result |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		res := "pass"
		if r.failed() {
			res = "FAIL"
		}
		frames := strconv.Itoa(r.got.frames)
		if r.got.width > 0 {
			frames += fmt.Sprintf(" (%dx%d)", r.got.width, r.got.height)
		}
		served := r.origin
		if served == "" {
			served = "-"
		}
		fmt.Fprintf(&b, "| %s | %s | `%s` | %s | %s | %s | %s |\n", r.client, r.proto, anon(r.url), r.path, frames, served, res)
	}
	b.WriteString("\nCommands (addresses as in the table):\n\n")
	seen := map[string]bool{}
	for _, r := range rows {
		c := anon(r.command)
		if c == "" || seen[c] {
			continue
		}
		seen[c] = true
		fmt.Fprintf(&b, "- %s %s: `%s`\n", r.client, r.proto, c)
	}
	return b.String()
}

// shellFields splits a command line on spaces, keeping "double-quoted" parts (quotes removed)
// in one field, as a shell would for the pipelines here.
func shellFields(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, have := false, false
	for _, c := range s {
		switch {
		case c == '"':
			quoted, have = !quoted, true
		case c == ' ' && !quoted:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(c)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// shellJoin quotes args for a shell, for the report.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \"'#{}()|&;<>*?$!`\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

func sizeOf(s string) (int, int) {
	w, h, _ := strings.Cut(s, "x")
	return atoi(w), atoi(h)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// tail is what a tool's output says about a failure: its error lines (a pipe-buffered stdout
// can land after them) and its last lines.
func tail(s string) string {
	var errs []string
	for _, l := range strings.Split(s, "\n") {
		low := strings.ToLower(l)
		if strings.Contains(low, "error") || strings.Contains(low, "fail") || strings.Contains(low, "refused") ||
			strings.Contains(low, "not support") || strings.Contains(low, "could not") {
			if len(errs) < 8 {
				errs = append(errs, strings.TrimSpace(l))
			}
		}
	}
	s = strings.TrimSpace(s)
	if len(s) > 800 {
		s = "..." + s[len(s)-800:]
	}
	if len(errs) > 0 {
		return strings.Join(errs, " | ") + " || last: " + s
	}
	return s
}
