package ingest

import (
	"bytes"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/peergate/peergate/origin/media"
)

var sps720 = []byte{
	0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50,
	0x05, 0xbb, 0x01, 0x6c, 0x80, 0x00, 0x00, 0x03,
	0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18,
	0xcb,
}

func fuzzFormats() []format.Format {
	return []format.Format{
		&format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: sps720, PPS: []byte{0x68, 0xee, 0x3c, 0x80}},
		&format.H265{PayloadTyp: 96},
		&format.MPEG4Audio{PayloadTyp: 97, Config: &mpeg4audio.AudioSpecificConfig{
			Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelConfig: 2, ChannelCount: 2,
		}, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3},
		&format.Opus{PayloadTyp: 111, ChannelCount: 2},
	}
}

// TestDepacketizeH264 checks that an IDR split over RTP comes out as one key frame unit
// with parameter sets, and that units before the first key frame are held back.
func TestDepacketizeH264(t *testing.T) {
	f := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: sps720, PPS: []byte{0x68, 0xee, 0x3c, 0x80}}
	var got []media.Unit
	dep, err := Depacketizer(f, 0, func(u media.Unit) { got = append(got, u) })
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := f.CreateEncoder()
	write := func(au [][]byte, pts int64) {
		pkts, err := enc.Encode(au)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			dep(p, pts, time.Time{})
		}
	}
	write([][]byte{{0x41, 0x9a, 0x02}}, 0) // P frame before any key frame: dropped
	idr := append([]byte{0x65, 0x88, 0x84, 0x00, 0x33}, bytes.Repeat([]byte{0xff}, 4000)...)
	write([][]byte{idr}, 3000)
	write([][]byte{{0x41, 0x9a, 0x02, 0x00, 0x33}}, 6000)
	if len(got) != 2 {
		t.Fatalf("got %d units, want 2", len(got))
	}
	if got[0].AU[0][0] != 0x67 || got[0].AU[1][0] != 0x68 || len(got[0].AU[2]) != len(idr) {
		t.Fatalf("key frame unit: %d NALUs", len(got[0].AU))
	}
	if got[1].PTS-got[0].PTS != time.Second/30 {
		t.Fatalf("pts step %v", got[1].PTS-got[0].PTS)
	}
}

func FuzzDepacketize(f *testing.F) {
	f.Add(uint8(0), []byte{0x65, 0x88, 0x84}, true)
	f.Add(uint8(0), []byte{0x7c, 0x85, 0x88}, false)
	f.Add(uint8(0), []byte{0x18, 0x00, 0x19, 0x67, 0x64}, true)
	f.Add(uint8(1), []byte{0x26, 0x01, 0xaf}, true)
	f.Add(uint8(1), []byte{0x62, 0x01, 0x93, 0xaf}, true)
	f.Add(uint8(2), []byte{0x00, 0x10, 0x00, 0x20, 0x21}, true)
	f.Add(uint8(3), []byte{0xfc, 0xff, 0xfe}, true)
	f.Fuzz(func(t *testing.T, which uint8, payload []byte, marker bool) {
		forms := fuzzFormats()
		fm := forms[int(which)%len(forms)]
		dep, err := Depacketizer(fm, 0, func(media.Unit) {})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			dep(&rtp.Packet{Header: rtp.Header{PayloadType: fm.PayloadType(), Marker: marker, SequenceNumber: uint16(i)},
				Payload: payload}, int64(i)*3000, time.Time{})
		}
	})
}
