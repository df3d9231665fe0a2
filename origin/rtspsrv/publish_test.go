package rtspsrv

import (
	"context"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/peergate/peergate/origin/media"
)

// TestZeroSampleRateAACDropped: an announced AAC track with sample rate 0 is not carried;
// the video track of the same publisher still is, and nothing panics.
func TestZeroSampleRateAACDropped(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s := &Server{Address: "127.0.0.1:0", Table: tbl}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tcp := gortsplib.ProtocolTCP
	c := &gortsplib.Client{Protocol: &tcp}
	aac := &format.MPEG4Audio{PayloadTyp: 97, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3,
		Config: &mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 0, ChannelCount: 2}}
	desc := &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: sps720, PPS: []byte{0x68, 0xee, 0x3c, 0x80}}}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{aac}},
	}}
	if err := c.StartRecording("rtsp://"+s.Addr().String()+"/live/zero", desc); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Published on RECORD, before its answer.
	st := tbl.Get("live/zero")
	if st == nil || len(st.Tracks()) != 1 || !st.Tracks()[0].IsVideo() {
		t.Fatalf("stream %v, want the video track only", st)
	}
	rd, err := st.AddReader(media.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for i := 0; i < 50; i++ {
		_ = c.WritePacketRTP(desc.Medias[1], &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 97, SequenceNumber: uint16(i), Timestamp: uint32(i * 1024), Marker: true},
			Payload: []byte{0x00, 0x10, 0x00, 0x30, 0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c}})
	}
	// The sync point: a video key frame sent after the AAC packets on the same TCP
	// connection reaches a reader only once the server got past every one of them.
	if err := c.WritePacketRTP(desc.Medias[0], &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1, Timestamp: 90000, Marker: true},
		Payload: []byte{0x65, 0x88, 0x84, 0x00, 0x33}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := rd.Read(ctx)
	if err != nil || !u.KeyFrame || u.Track != 0 {
		t.Fatalf("after the dropped track's packets: unit %+v, %v; want the video key frame", u, err)
	}
	if st := tbl.Get("live/zero"); st == nil || len(st.Tracks()) != 1 {
		t.Fatalf("stream %v after the AAC packets, want still live with the video track only", st)
	}
}
