package rtmpsrv

import (
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/peergate/peergate/origin/media"
)

// Tracks maps an initialized RTMP reader's tracks to hub tracks, for the RTMP publish path and
// for on-demand RTMP pulls alike. skipped hears of each track the hub does not carry (it may be
// nil); those tracks get no-op callbacks, since gortmplib calls a nil callback otherwise. Call
// attach with the published stream before reading: it routes the reader's data into it.
func Tracks(r *gortmplib.Reader, skipped func(error)) (tracks []*media.Track, attach func(*media.Stream)) {
	var rtmpTracks []*gortmplib.Track
	for _, t := range r.Tracks() {
		mt, err := media.TrackFromRTMP(t.Codec)
		if err != nil {
			if skipped != nil {
				skipped(err)
			}
			continue
		}
		tracks = append(tracks, mt)
		rtmpTracks = append(rtmpTracks, t)
	}
	ignoreTracks(r)
	attach = func(st *media.Stream) {
		for i, t := range rtmpTracks {
			switch t.Codec.(type) {
			case *codecs.H264, *codecs.H265:
				f := tracks[i].Format
				_, hevc := t.Codec.(*codecs.H265)
				cb := func(pts, dts time.Duration, au [][]byte) {
					if isParamsOnly(au, hevc) {
						media.PrepareAU(f, au) // a configuration message: new parameter sets, no picture
						return
					}
					st.WriteUnit(media.Unit{Track: i, PTS: pts, DTS: dts, AU: au})
				}
				if hevc {
					r.OnDataH265(t, cb)
				} else {
					r.OnDataH264(t, cb)
				}
			case *codecs.MPEG4Audio:
				r.OnDataMPEG4Audio(t, func(pts time.Duration, au []byte) {
					st.WriteUnit(media.Unit{Track: i, PTS: pts, DTS: pts, Frame: au})
				})
			case *codecs.Opus:
				r.OnDataOpus(t, func(pts time.Duration, pkt []byte) {
					st.WriteUnit(media.Unit{Track: i, PTS: pts, DTS: pts, Frame: pkt})
				})
			}
		}
	}
	return tracks, attach
}
