package rtmpsrv

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/httpsrv"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/cluster"
)

// neverStarts claims every name is on demand but never publishes it.
type neverStarts struct{}

func (neverStarts) Start(string) bool { return true }

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

// TestTrackAnalysisBounded: gortmplib keeps every message a publisher sends before its
// tracks are known, and a publisher whose timestamps never advance never ends that phase.
// Such a publisher is cut off after a bounded amount of data instead of filling memory
// until the handshake deadline.
func TestTrackAnalysisBounded(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s := &Server{Address: "127.0.0.1:0", Table: tbl, HandshakeTimeout: 30 * time.Second}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, _ := url.Parse("rtmp://" + s.Addr().String() + "/live/flood")
	cl := &gortmplib.Client{URL: u, Publish: true}
	if err := cl.Initialize(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// No metadata and no configuration: nothing shortens gortmplib's analysis.
	const total = 3 * maxAnalysisBytes
	frame := make([]byte, 1<<20)
	frame[0] = 0x41
	_ = cl.NetConn().SetWriteDeadline(time.Now().Add(60 * time.Second))
	sent := 0
	var err error
	for sent < total {
		// Timestamp 0 forever: the 2 s analysis never completes.
		err = cl.Write(&message.Video{
			ChunkStreamID: message.VideoChunkStreamID, MessageStreamID: 0x1000000,
			Codec: message.CodecH264, Type: message.VideoTypeAU, AU: frame,
		})
		if err != nil {
			break
		}
		sent += len(frame)
	}
	if err == nil || sent > 2*maxAnalysisBytes {
		t.Fatalf("the server took %d MiB from a publisher whose tracks were still unknown", sent>>20)
	}
	t.Logf("cut off after %d MiB: %v", sent>>20, err)
}

// toHTTP forwards the table's events to an HTTP server (eager HLS muxers), as main.go does.
type toHTTP struct{ hs *httpsrv.Server }

func (e *toHTTP) StreamRunning(n string, m cluster.StreamMeta) { e.hs.StreamRunning(n, m) }
func (e *toHTTP) StreamStopped(n string)                       { e.hs.StreamStopped(n) }

// TestZeroSampleRateAACRefused: an AAC configuration with an explicit sample rate of 0 is
// not carried (every output divides by the clock rate: gohlslib's muxer panicked and took
// the whole origin down); the stream with only that track is refused and the process lives.
func TestZeroSampleRateAACRefused(t *testing.T) {
	ev := &toHTTP{}
	tbl := media.NewTable(media.Config{Events: ev})
	defer tbl.Close()
	ev.hs = &httpsrv.Server{Address: "127.0.0.1:0", Table: tbl}
	if err := ev.hs.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer ev.hs.Close()
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
	time.Sleep(500 * time.Millisecond) // an eager muxer would be writing by now
	if st := tbl.Get("live/zero"); st != nil {
		t.Fatalf("stream published with tracks %v", st.Tracks())
	}
	res, err := http.Get("http://" + ev.hs.Addr().String() + "/live/zero/index.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("index.m3u8: %d, want 404", res.StatusCode)
	}
}
