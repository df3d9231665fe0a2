package rtmpsrv

import (
	"errors"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/message"
)

// fastTracks shortens gortmplib's 2-second track analysis. gortmplib's Reader reads media
// until 2 s of stream time have passed before it reports the tracks (it replays what it read
// afterwards), so a publisher would become visible, and its first key frame reach the
// registry and viewers, 2 s late. When the publisher's onMetaData lists exactly one video
// and/or one audio codec and every listed track has sent its configuration, fastTracks hands
// the analysis one extra copy of an AAC (or video) configuration message stamped 2 s after
// the first media message: it ends the analysis, and on replay gortmplib ignores an AAC
// configuration, while a repeated video configuration only refreshes the parameter sets
// (see ingest.RTMPTracks). Without usable metadata nothing changes.
type fastTracks struct {
	gortmplib.Conn

	// analysed is set by the caller once Reader.Initialize returned; until then every
	// message read is kept by gortmplib for its replay, so their bytes are capped.
	analysed bool

	metaSeen, wantVideo, wantAudio bool
	videoCfg                       *message.Video
	audioCfg                       *message.Audio
	audioSeen                      bool
	firstDTS                       time.Duration
	firstSeen                      bool
	injected                       bool
}

// maxAnalysisBytes caps what a publisher may send before its tracks are known (2 s of a
// 250 Mbit/s stream): timestamps that never advance would otherwise grow gortmplib's
// replay buffer until the handshake deadline.
const maxAnalysisBytes = 64 << 20

var errAnalysisTooLarge = errors.New("too much data before the tracks were known")

func (f *fastTracks) Read() (message.Message, error) {
	if !f.analysed && f.Conn.BytesReceived() > maxAnalysisBytes {
		return nil, errAnalysisTooLarge
	}
	if !f.injected && f.ready() {
		f.injected = true
		if f.audioCfg != nil {
			c := *f.audioCfg
			c.DTS = f.firstDTS + trackAnalysis
			return &c, nil
		}
		c := *f.videoCfg
		c.DTS, c.PTSDelta = f.firstDTS+trackAnalysis, 0
		return &c, nil
	}
	msg, err := f.Conn.Read()
	if err != nil || f.injected {
		return msg, err
	}
	switch m := msg.(type) {
	case *message.DataAMF0:
		f.onMetaData(m)
	case *message.Video:
		f.first(m.DTS)
		if m.Type == message.VideoTypeConfig && f.videoCfg == nil {
			f.videoCfg = m
		}
	case *message.Audio:
		f.first(m.DTS)
		f.audioSeen = true
		if m.Codec == message.CodecMPEG4Audio && m.AACType == message.AudioAACTypeConfig && f.audioCfg == nil {
			f.audioCfg = m
		}
	case *message.VideoExCodedFrames, *message.VideoExFramesX, *message.AudioExCodedFrames,
		*message.VideoExMultitrack, *message.AudioExMultitrack, *message.VideoExSequenceStart,
		*message.AudioExSequenceStart:
		// Enhanced RTMP: keep gortmplib's own analysis.
		f.metaSeen = false
		f.injected = true
	}
	return msg, err
}

func (f *fastTracks) first(dts time.Duration) {
	if !f.firstSeen {
		f.firstSeen, f.firstDTS = true, dts
	}
}

// ready: metadata seen, every announced track configured, and a harmless message to inject.
func (f *fastTracks) ready() bool {
	if !f.metaSeen || !f.firstSeen || (!f.wantVideo && !f.wantAudio) {
		return false
	}
	if f.wantVideo && f.videoCfg == nil {
		return false
	}
	if f.wantAudio && (!f.audioSeen || (f.audioCfg == nil && f.videoCfg == nil)) {
		return false
	}
	// Legacy non-AAC audio (MP3, G.711...) is detected from its first frame, already seen.
	return f.audioCfg != nil || f.videoCfg != nil
}

// onMetaData reads the codec ids of "@setDataFrame onMetaData" / "onMetaData".
func (f *fastTracks) onMetaData(m *message.DataAMF0) {
	p := m.Payload
	if len(p) > 0 && p[0] == "@setDataFrame" {
		p = p[1:]
	}
	if len(p) < 2 || p[0] != "onMetaData" {
		return
	}
	var obj amf0.Object
	switch o := p[1].(type) {
	case amf0.Object:
		obj = o
	case amf0.ECMAArray:
		obj = amf0.Object(o)
	default:
		return
	}
	if _, ok := obj.Get("videoTrackIdInfoMap"); ok {
		return // multitrack: leave it to gortmplib
	}
	if _, ok := obj.Get("audioTrackIdInfoMap"); ok {
		return
	}
	v, _ := obj.GetFloat64("videocodecid")
	a, _ := obj.GetFloat64("audiocodecid")
	// Only the legacy FLV codec ids are handled here: H.264 (7), H.265 (12) and any legacy audio.
	if v != 0 && v != 7 && v != 12 {
		return
	}
	if a > 15 {
		return // a FourCC: Enhanced RTMP audio
	}
	// 0 is what writers put for "no such track" (gortmplib writes it, FFmpeg omits the key).
	f.metaSeen, f.wantVideo, f.wantAudio = true, v != 0, a != 0
}
