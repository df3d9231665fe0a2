package rtmpsrv

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
)

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

// TestFastTrackDetection: a publisher whose metadata names its tracks is live as soon as
// their configurations arrive, without gortmplib's 2 s of buffered media, and the extra
// configuration message that ends the analysis never reaches readers.
func TestFastTrackDetection(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	_, base := startRTMP(t, tbl, 0)
	for _, withAudio := range []bool{true, false} {
		u, _ := url.Parse(base + "/live/fast")
		cl := &gortmplib.Client{URL: u, Publish: true}
		if err := cl.Initialize(context.Background()); err != nil {
			t.Fatal(err)
		}
		video := &gortmplib.Track{Codec: &codecs.H264{SPS: sps720, PPS: []byte{0x68, 0xee, 0x3c, 0x80}}}
		audio := &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: &mpeg4audio.AudioSpecificConfig{
			Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 44100, ChannelConfig: 2, ChannelCount: 2,
		}}}
		tracks := []*gortmplib.Track{video}
		if withAudio {
			tracks = append(tracks, audio)
		}
		w := &gortmplib.Writer{Conn: cl, Tracks: tracks}
		if err := w.Initialize(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := w.WriteH264(video, 0, 0, [][]byte{{0x65, 0x88, 0x84, 0x00, 0x33}}); err != nil {
			t.Fatal(err)
		}
		// One frame and no more: without the fast path gortmplib waits for 2 s of stream
		// time that never comes, and the handshake deadline (4 s) ends the publisher
		// before it is live. So any time within 10 s proves the analysis was skipped.
		mediatest.EventuallyT(t, 10*time.Second, func() bool { return tbl.Get("live/fast") != nil },
			"audio=%v: not live after the first frame (2 s analysis not skipped)", withAudio)
		t.Logf("audio=%v: live %v after the first frame", withAudio, time.Since(start).Round(time.Millisecond))
		st := tbl.Get("live/fast")
		if n := len(st.Tracks()); n != len(tracks) {
			t.Fatalf("%d tracks, want %d", n, len(tracks))
		}
		rd, err := st.AddReader(media.ReaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteH264(video, 40*time.Millisecond, 40*time.Millisecond, [][]byte{{0x41, 0x9a, 0x02}}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for i := 0; i < 2; i++ {
			un, err := rd.Read(ctx)
			if err != nil {
				t.Fatalf("unit %d: %v", i, err)
			}
			if un.DTS != time.Duration(i)*40*time.Millisecond || un.KeyFrame != (i == 0) {
				t.Fatalf("unit %d: dts %v key %v", i, un.DTS, un.KeyFrame)
			}
		}
		cancel()
		rd.Close()
		cl.Close()
		mediatest.EventuallyT(t, 10*time.Second, func() bool { return !tbl.Live("live/fast") }, "publisher not gone")
	}
}
