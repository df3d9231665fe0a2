// Package ingest turns what publishers and pulled sources send (RTMP messages, RTP packets) into the
// media hub's units; the origin's listeners and its on-demand pulls share it.
package ingest

import (
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/peergate/peergate/origin/media"
)

// RTMPTracks maps an initialized RTMP reader's tracks to hub tracks, for the RTMP publish path and
// for on-demand RTMP pulls alike. skipped hears of each track the hub does not carry (it may be
// nil); those tracks get no-op callbacks, since gortmplib calls a nil callback otherwise. Call
// attach with the published stream before reading: it routes the reader's data into it.
func RTMPTracks(r *gortmplib.Reader, skipped func(error)) (tracks []*media.Track, attach func(*media.Stream)) {
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

// ignoreTracks installs no-op data callbacks on every track of r; callers override the ones they use.
func ignoreTracks(r *gortmplib.Reader) {
	for _, t := range r.Tracks() {
		switch t.Codec.(type) {
		case *codecs.AV1:
			r.OnDataAV1(t, func(time.Duration, [][]byte) {})
		case *codecs.VP9:
			r.OnDataVP9(t, func(time.Duration, []byte) {})
		case *codecs.H265:
			r.OnDataH265(t, func(time.Duration, time.Duration, [][]byte) {})
		case *codecs.H264:
			r.OnDataH264(t, func(time.Duration, time.Duration, [][]byte) {})
		case *codecs.Opus:
			r.OnDataOpus(t, func(time.Duration, []byte) {})
		case *codecs.FLAC:
			r.OnDataFLAC(t, func(time.Duration, []byte) {})
		case *codecs.MPEG4Audio:
			r.OnDataMPEG4Audio(t, func(time.Duration, []byte) {})
		case *codecs.MPEG1Audio:
			r.OnDataMPEG1Audio(t, func(time.Duration, []byte) {})
		case *codecs.AC3:
			r.OnDataAC3(t, func(time.Duration, []byte) {})
		case *codecs.G711:
			r.OnDataG711(t, func(time.Duration, []byte) {})
		case *codecs.LPCM:
			r.OnDataLPCM(t, func(time.Duration, []byte) {})
		}
	}
}

// isParamsOnly reports whether an H.264 (or H.265) AU holds only parameter sets (what
// gortmplib hands over for a configuration message).
func isParamsOnly(au [][]byte, hevc bool) bool {
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		if hevc {
			if t := (n[0] >> 1) & 0x3f; t < 32 || t > 34 { // VPS, SPS, PPS
				return false
			}
		} else if t := n[0] & 0x1f; t != 7 && t != 8 { // SPS, PPS
			return false
		}
	}
	return true
}
