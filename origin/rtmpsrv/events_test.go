package rtmpsrv

import (
	"context"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/origin/rtspsrv"
	"github.com/peergate/peergate/shared/cluster"
)

type stamp struct {
	running bool
	name    string
	meta    cluster.StreamMeta
	at      time.Time
}

type stampEvents struct{ ch chan stamp }

func (e *stampEvents) StreamRunning(name string, m cluster.StreamMeta) {
	e.ch <- stamp{running: true, name: name, meta: m, at: time.Now()}
}
func (e *stampEvents) StreamStopped(name string) { e.ch <- stamp{name: name, at: time.Now()} }

func (e *stampEvents) next(t *testing.T) stamp {
	t.Helper()
	select {
	case s := <-e.ch:
		return s
	case <-time.After(15 * time.Second):
		t.Fatal("no event")
		return stamp{}
	}
}

// TestEventTiming: for an ffmpeg publisher over RTMP and over RTSP, StreamRunning (with codecs
// and resolution) follows the first key frame reaching the table, and StreamStopped the
// publisher's exit. Both must come within 5 s; how long they took is logged (the figures
// are tens of microseconds on an idle machine, and a loaded one may hold any goroutine).
func TestEventTiming(t *testing.T) {
	ev := &stampEvents{ch: make(chan stamp, 16)}
	tbl := media.NewTable(media.Config{})
	tbl.Notify(ev)
	defer tbl.Close()
	_, rtmpBase := startRTMP(t, tbl, 0)
	rs := &rtspsrv.Server{Address: "127.0.0.1:0", Table: tbl}
	if err := rs.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer rs.Close()

	for _, c := range []struct{ proto, name string }{{"rtmp", "live/ev1"}, {"rtsp", "live/ev2"}} {
		t.Run(c.proto, func(t *testing.T) {
			var pub *mediatest.Proc
			if c.proto == "rtmp" {
				pub = mediatest.PublishRTMP(t, rtmpBase+"/"+c.name, mediatest.Source{})
			} else {
				pub = mediatest.PublishRTSP(t, "rtsp://"+rs.Addr().String()+"/"+c.name, "tcp", mediatest.Source{})
			}
			// A reader attached as soon as the tracks are known sees the first key frame.
			var st *media.Stream
			if !mediatest.Eventually(15*time.Second, func() bool { st = tbl.Get(c.name); return st != nil }) {
				t.Fatalf("never published: %s", pub.Output())
			}
			rd, err := st.AddReader(media.ReaderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			u, err := rd.Read(ctx)
			if err != nil || !u.KeyFrame {
				t.Fatalf("first unit %v %v", u.KeyFrame, err)
			}
			keyAt := time.Now()
			run := ev.next(t)
			if !run.running || run.name != c.name {
				t.Fatalf("event %+v", run)
			}
			// The reader may have been handed a cached key frame slightly after the event,
			// so a negative figure means "before the reader could look".
			up := run.at.Sub(keyAt)
			if up > 5*time.Second {
				t.Errorf("running %v after the first key frame", up)
			}
			if run.meta.Codecs != "avc1.4d401e,mp4a.40.2" && run.meta.Codecs != "avc1.64001e,mp4a.40.2" {
				t.Errorf("codecs %q", run.meta.Codecs)
			}
			if run.meta.Width != 640 || run.meta.Height != 360 {
				t.Errorf("resolution %dx%d", run.meta.Width, run.meta.Height)
			}
			// Measured from the publisher's exit (its socket closes as it exits), so the time a
			// loaded machine needs to reap a killed ffmpeg does not count.
			pub.Stop()
			killed := time.Now()
			stop := ev.next(t)
			if stop.running || stop.name != c.name {
				t.Fatalf("event %+v", stop)
			}
			down := stop.at.Sub(killed)
			if down > 5*time.Second {
				t.Errorf("stopped %v after the publisher exited", down)
			}
			t.Logf("%s: running %v after the first key frame, stopped %v after the publisher exited", c.proto, up, down)
		})
	}
}
