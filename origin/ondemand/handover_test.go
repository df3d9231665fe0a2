package ondemand

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/filesrc"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/origin/rtspsrv"
	"github.com/peergate/peergate/shared/cluster"
)

// twinOrigins are two RTSP servers of one table fed by the demo clip: two copies of live/cam
// with one source clock, as an owner and its relay are.
func twinOrigins(t *testing.T) (a, b *rtspsrv.Server, ca, cb cluster.Carrier) {
	t.Helper()
	tbl := media.NewTable(media.Config{})
	t.Cleanup(tbl.Close)
	serve := func(id string) (*rtspsrv.Server, cluster.Carrier) {
		srv := &rtspsrv.Server{Address: "127.0.0.1:0", Table: tbl, Logger: testLogger()}
		if err := srv.Initialize(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		return srv, cluster.Carrier{
			Origin: cluster.Origin{ID: id, State: cluster.StateUp, Public: cluster.Public{"rtsp": "rtsp://" + srv.Addr().String()}},
			Stream: cluster.Stream{Name: "live/cam", State: cluster.StreamRunning},
		}
	}
	a, ca = serve("a-first") // ranks first: same load, lower id
	b, cb = serve("b-second")
	src := &filesrc.Source{Name: "live/cam", Path: mediatest.Demo(t), Table: tbl, Logger: testLogger()}
	if err := src.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	return a, b, ca, cb
}

// readVideo reads the reader's video units until n arrived, the reader ended or d passed.
// Units before the source's clock reached the relay do not count: only a stream with the
// source's clock is held.
func readVideo(rd *media.Reader, n int, d time.Duration) ([]media.Unit, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []media.Unit
	for len(out) < n {
		u, err := rd.Read(ctx)
		if err != nil {
			return out, err
		}
		if u.Track == 0 && !u.NTP.IsZero() {
			out = append(out, u)
		}
	}
	return out, nil
}

// TestRelayHandover: a relay whose upstream dies keeps its stream: a reader attached before
// the death goes on reading the same stream from the next upstream, on the same timeline,
// no frame twice; the registry lists the relay running all along, then with its new upstream.
func TestRelayHandover(t *testing.T) {
	aSrv, _, a, b := twinOrigins(t)
	logs := &logCounts{}
	fc := &fakeCluster{carriers: []cluster.Carrier{a, b}}
	o := startOrigin(t, nil, originOpts{idle: 30 * time.Second, cluster: fc, startTimeout: 10 * time.Second, logs: logs, grace: 10 * time.Second})

	st, rd, err := o.tbl.Subscribe(context.Background(), "live/cam", media.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	before, err := readVideo(rd, 50, 30*time.Second)
	if err != nil {
		t.Fatalf("before the death: %d frames, %v", len(before), err)
	}
	if s, ok := o.reg.get("live/cam"); !ok || s.Upstream != "a-first" {
		t.Fatalf("listed %+v (%v), want a relay of a-first", s, ok)
	}

	aSrv.Close() // a-first dies; fc still lists it, as the registry does until the TTL
	after, err := readVideo(rd, 100, 40*time.Second)
	if err != nil {
		t.Fatalf("after the death: the reader got %d more frames, then %v; registry: %s", len(after), err, o.reg.hist())
	}
	if o.tbl.Get("live/cam") != st {
		t.Fatal("the relay's stream was replaced")
	}
	all := append(before, after...)
	for i := 1; i < len(all); i++ {
		// Decode order: presentation times go back and forth (B-frames), decode times grow.
		if all[i].DTS <= all[i-1].DTS {
			t.Fatalf("frame %d: DTS %v after DTS %v: the timeline went back (a frame twice?)", i, all[i].DTS, all[i-1].DTS)
		}
	}
	if !mediatest.Eventually(10*time.Second, func() bool {
		s, ok := o.reg.get("live/cam")
		return ok && s.Upstream == "b-second"
	}) {
		t.Fatalf("the registry does not list b-second as the upstream: %s", o.reg.hist())
	}
	if tr := o.reg.transitions(); tr != "live/cam=running" {
		t.Errorf("registry transitions %q: the relay's entry changed state", tr)
	}
	if logs.get("relay upstream lost, stream held") != 1 || logs.get("relay stream continued") != 1 || logs.get("relay stream ended") != 0 {
		t.Errorf("log: held %d, continued %d, ended %d; want 1, 1, 0", logs.get("relay upstream lost, stream held"),
			logs.get("relay stream continued"), logs.get("relay stream ended"))
	}
}

// TestRelayHandoverGrace: with no other copy to continue from, the held stream ends after
// RelayGrace (not before), as a stream whose source ended: its readers get EOF and the
// registry no longer lists the relay.
func TestRelayHandoverGrace(t *testing.T) {
	aSrv, _, a, _ := twinOrigins(t)
	logs := &logCounts{}
	fc := &fakeCluster{carriers: []cluster.Carrier{a}}
	const grace = 3 * time.Second
	o := startOrigin(t, nil, originOpts{idle: 30 * time.Second, cluster: fc, startTimeout: 10 * time.Second, logs: logs, grace: grace})
	_, rd, err := o.tbl.Subscribe(context.Background(), "live/cam", media.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if got, err := readVideo(rd, 20, 30*time.Second); err != nil {
		t.Fatalf("before the death: %d frames, %v", len(got), err)
	}
	aSrv.Close()
	if !mediatest.Eventually(20*time.Second, func() bool { return logs.get("relay upstream lost, stream held") == 1 }) {
		t.Fatal("the stream was not held")
	}
	held := time.Now()
	// Drain what was queued; then the reader waits until the stream ends.
	for {
		_, err := readVideo(rd, 1<<20, 30*time.Second)
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the held stream did not end: %v", err)
		}
		if !errors.Is(err, io.EOF) {
			t.Fatalf("reader ended with %v, want EOF", err)
		}
		break
	}
	if d := time.Since(held); d < grace/2 {
		t.Fatalf("the stream ended %v after it was held, before the grace (%v)", d, grace)
	}
	if logs.get("relay stream ended") != 1 {
		t.Errorf("%d 'relay stream ended' lines, want 1", logs.get("relay stream ended"))
	}
	if !mediatest.Eventually(10*time.Second, func() bool {
		_, listed := o.reg.get("live/cam")
		return !listed
	}) || !strings.Contains(o.reg.hist(), "live/cam=removed") {
		t.Fatalf("the relay is still listed: %s", o.reg.hist())
	}
}

// TestRelayHandoverTracksDiffer: when the next copy's tracks differ from the held stream's
// (here another picture size: another SPS), the held stream ends as it did before the
// handover existed (its readers get EOF) and the relay publishes a new stream from the new
// upstream.
func TestRelayHandoverTracksDiffer(t *testing.T) {
	ffmpeg := mediatest.Tool(t, "ffmpeg")
	small := filepath.Join(t.TempDir(), "small.ts")
	out, err := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25",
		"-c:a", "aac", "-ac", "2", "-f", "mpegts", small).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	aSrv, _, a, _ := twinOrigins(t)
	// b-second serves live/cam from the smaller clip.
	btbl := media.NewTable(media.Config{})
	t.Cleanup(btbl.Close)
	bSrv := &rtspsrv.Server{Address: "127.0.0.1:0", Table: btbl, Logger: testLogger()}
	if err := bSrv.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bSrv.Close)
	bsrc := &filesrc.Source{Name: "live/cam", Path: small, Table: btbl, Logger: testLogger()}
	if err := bsrc.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bsrc.Close)
	b := cluster.Carrier{
		Origin: cluster.Origin{ID: "b-second", State: cluster.StateUp, Public: cluster.Public{"rtsp": "rtsp://" + bSrv.Addr().String()}},
		Stream: cluster.Stream{Name: "live/cam", State: cluster.StreamRunning},
	}
	logs := &logCounts{}
	fc := &fakeCluster{carriers: []cluster.Carrier{a, b}}
	o := startOrigin(t, nil, originOpts{idle: 30 * time.Second, cluster: fc, startTimeout: 10 * time.Second, logs: logs, grace: 10 * time.Second})
	st, rd, err := o.tbl.Subscribe(context.Background(), "live/cam", media.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if got, err := readVideo(rd, 20, 30*time.Second); err != nil {
		t.Fatalf("before the death: %d frames, %v", len(got), err)
	}
	if m := st.Meta(); m.Width != 640 {
		t.Fatalf("relay stream %+v, want the 640-wide demo", m)
	}
	aSrv.Close()
	if _, err := readVideo(rd, 1<<20, 30*time.Second); !errors.Is(err, io.EOF) {
		t.Fatalf("reader of the held stream: %v, want EOF (tracks differ)", err)
	}
	if !mediatest.Eventually(20*time.Second, func() bool {
		s := o.tbl.Get("live/cam")
		return s != nil && s != st && s.Meta().Width == 320
	}) {
		t.Fatalf("no new stream from b-second; registry: %s", o.reg.hist())
	}
	if logs.get("relay stream ended") != 1 || logs.get("relay stream continued") != 0 {
		t.Errorf("log: ended %d, continued %d; want 1, 0", logs.get("relay stream ended"), logs.get("relay stream continued"))
	}
}
