package media

import (
	"fmt"
	"strings"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/codecparams"
	hlscodecs "github.com/bluenviron/gohlslib/v2/pkg/codecs"
	rtmpcodecs "github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"

	"github.com/peergate/peergate/shared/cluster"
)

// Track is one elementary stream of a Stream. Format is one of *format.H264, *format.H265,
// *format.MPEG4Audio or *format.Opus; its parameter sets are read with SafeParams because
// WriteUnit refreshes them from in-band NAL units.
type Track struct {
	Format format.Format
}

// Supported reports whether the hub carries this codec through to every output.
func Supported(f format.Format) bool {
	switch f := f.(type) {
	case *format.H264, *format.H265, *format.Opus:
		return true
	case *format.MPEG4Audio:
		// The sample rate is the clock rate every output divides by; an explicit 0 is legal
		// in the bitstream and would panic them (gohlslib's muxer took the process down).
		return f.Config != nil && f.Config.SampleRate > 0
	}
	return false
}

// IsVideo reports whether the track is H.264 or H.265.
func (t *Track) IsVideo() bool {
	switch t.Format.(type) {
	case *format.H264, *format.H265:
		return true
	}
	return false
}

// ClockRate is the track's RTP clock rate (90000 for video, the sample rate for AAC, 48000 for Opus).
func (t *Track) ClockRate() int { return t.Format.ClockRate() }

// HLSCodec converts the track for gohlslib (gohlslib.Track{Codec: t.HLSCodec(), ClockRate: t.ClockRate()}).
func (t *Track) HLSCodec() hlscodecs.Codec {
	switch f := t.Format.(type) {
	case *format.H264:
		sps, pps := f.SafeParams()
		return &hlscodecs.H264{SPS: sps, PPS: pps}
	case *format.H265:
		vps, sps, pps := f.SafeParams()
		return &hlscodecs.H265{VPS: vps, SPS: sps, PPS: pps}
	case *format.MPEG4Audio:
		return &hlscodecs.MPEG4Audio{Config: *f.Config}
	case *format.Opus:
		return &hlscodecs.Opus{ChannelCount: f.ChannelCount}
	}
	return nil
}

// RTMPCodec converts the track for gortmplib (gortmplib.Track{Codec: t.RTMPCodec()}).
func (t *Track) RTMPCodec() rtmpcodecs.Codec {
	switch f := t.Format.(type) {
	case *format.H264:
		sps, pps := f.SafeParams()
		return &rtmpcodecs.H264{SPS: sps, PPS: pps}
	case *format.H265:
		vps, sps, pps := f.SafeParams()
		return &rtmpcodecs.H265{VPS: vps, SPS: sps, PPS: pps}
	case *format.MPEG4Audio:
		return &rtmpcodecs.MPEG4Audio{Config: f.Config}
	case *format.Opus:
		return &rtmpcodecs.Opus{IDHeader: &opus.IDHeader{
			Version: 1, ChannelCount: uint8(f.ChannelCount), PreSkip: 3840, InputSampleRate: 48000,
		}}
	}
	return nil
}

// TrackFromRTMP converts a gortmplib codec; codecs the hub does not carry are an error.
func TrackFromRTMP(c rtmpcodecs.Codec) (*Track, error) {
	switch c := c.(type) {
	case *rtmpcodecs.H264:
		return &Track{Format: &format.H264{PayloadTyp: 96, SPS: c.SPS, PPS: c.PPS, PacketizationMode: 1}}, nil
	case *rtmpcodecs.H265:
		return &Track{Format: &format.H265{PayloadTyp: 96, VPS: c.VPS, SPS: c.SPS, PPS: c.PPS}}, nil
	case *rtmpcodecs.MPEG4Audio:
		if c.Config == nil || c.Config.SampleRate <= 0 {
			return nil, fmt.Errorf("MPEG-4 audio without config or sample rate")
		}
		return &Track{Format: &format.MPEG4Audio{
			PayloadTyp: 96, Config: c.Config, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3,
		}}, nil
	case *rtmpcodecs.Opus:
		ch := 2
		if c.IDHeader != nil && c.IDHeader.ChannelCount > 0 {
			ch = int(c.IDHeader.ChannelCount)
		}
		return &Track{Format: &format.Opus{PayloadTyp: 96, ChannelCount: ch}}, nil
	}
	return nil, fmt.Errorf("codec %T is not supported", c)
}

// codecString is the track's HLS CODECS entry ("avc1.64001f", "mp4a.40.2"), empty if unknown.
func (t *Track) codecString() string {
	if c := t.HLSCodec(); c != nil {
		return codecparams.Marshal(c)
	}
	return ""
}

// resolution reads width and height from the video track's SPS; zeros when unknown.
func (t *Track) resolution() (int, int) {
	switch f := t.Format.(type) {
	case *format.H264:
		sps, _ := f.SafeParams()
		var s h264.SPS
		if len(sps) > 0 && s.Unmarshal(sps) == nil {
			return s.Width(), s.Height()
		}
	case *format.H265:
		_, sps, _ := f.SafeParams()
		var s h265.SPS
		if len(sps) > 0 && s.Unmarshal(sps) == nil {
			return s.Width(), s.Height()
		}
	}
	return 0, 0
}

// Meta builds the registry metadata of a set of tracks (bitrate left to the caller).
func Meta(tracks []*Track) cluster.StreamMeta {
	var m cluster.StreamMeta
	var codecs []string
	for _, t := range tracks {
		if c := t.codecString(); c != "" {
			codecs = append(codecs, c)
		}
		if m.Width == 0 && t.IsVideo() {
			m.Width, m.Height = t.resolution()
		}
	}
	m.Codecs = strings.Join(codecs, ",")
	return m
}

// ToClock converts d to ticks of a clock rate without overflowing for long-running streams.
func ToClock(d time.Duration, rate int) int64 {
	r := int64(rate)
	return int64(d/time.Second)*r + int64(d%time.Second)*r/int64(time.Second)
}

// FromClock converts ticks of a clock rate to a duration without overflow.
func FromClock(ticks int64, rate int) time.Duration {
	r := int64(rate)
	return time.Duration(ticks/r)*time.Second + time.Duration(ticks%r)*time.Second/time.Duration(r)
}
