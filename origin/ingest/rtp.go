package ingest

import (
	"fmt"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/peergate/peergate/origin/media"
)

// Depacketizer returns a function that turns RTP packets of one format into hub units for
// track and hands them to write. pts is the packet's presentation time in the format's
// clock rate (gortsplib's PacketPTS). RTSP publishers and on-demand RTSP pulls share it.
func Depacketizer(f format.Format, track int, write func(media.Unit)) (func(pkt *rtp.Packet, pts int64, ntp time.Time), error) {
	rate := f.ClockRate()
	switch f := f.(type) {
	case *format.H264:
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		var dtsEx *h264.DTSExtractor
		return func(pkt *rtp.Packet, pts int64, ntp time.Time) {
			au, err := dec.Decode(pkt)
			if err != nil {
				return // fragment pending or broken packet: wait for the next AU
			}
			au, key := media.PrepareAU(f, au)
			if dtsEx == nil {
				if !key {
					return // DTS extraction starts at a random access point
				}
				dtsEx = &h264.DTSExtractor{}
				dtsEx.Initialize()
			}
			dts, err := dtsEx.Extract(au, pts)
			if err != nil {
				dtsEx = nil // resync on the next key frame
				return
			}
			write(media.Unit{Track: track, PTS: media.FromClock(pts, rate), DTS: media.FromClock(dts, rate), NTP: ntp, AU: au})
		}, nil

	case *format.H265:
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		var dtsEx *h265.DTSExtractor
		return func(pkt *rtp.Packet, pts int64, ntp time.Time) {
			au, err := dec.Decode(pkt)
			if err != nil {
				return
			}
			au, key := media.PrepareAU(f, au)
			if dtsEx == nil {
				if !key {
					return
				}
				dtsEx = &h265.DTSExtractor{}
				dtsEx.Initialize()
			}
			dts, err := dtsEx.Extract(au, pts)
			if err != nil {
				dtsEx = nil
				return
			}
			write(media.Unit{Track: track, PTS: media.FromClock(pts, rate), DTS: media.FromClock(dts, rate), NTP: ntp, AU: au})
		}, nil

	case *format.MPEG4Audio:
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		return func(pkt *rtp.Packet, pts int64, ntp time.Time) {
			aus, err := dec.Decode(pkt)
			if err != nil {
				return
			}
			for i, au := range aus {
				p := pts + int64(i)*mpeg4audio.SamplesPerAccessUnit
				var n time.Time
				if !ntp.IsZero() {
					n = ntp.Add(media.FromClock(int64(i)*mpeg4audio.SamplesPerAccessUnit, rate))
				}
				d := media.FromClock(p, rate)
				write(media.Unit{Track: track, PTS: d, DTS: d, NTP: n, Frame: au})
			}
		}, nil

	case *format.Opus:
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		return func(pkt *rtp.Packet, pts int64, ntp time.Time) {
			b, err := dec.Decode(pkt)
			if err != nil {
				return
			}
			d := media.FromClock(pts, rate)
			write(media.Unit{Track: track, PTS: d, DTS: d, NTP: ntp, Frame: b})
		}, nil
	}
	return nil, fmt.Errorf("ingest: codec %s is not supported", f.Codec())
}
