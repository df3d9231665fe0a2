package filesrc

import (
	"bufio"
	"errors"
	"io"
	"os"
	"sort"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	mp4codecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/pmp4"

	"github.com/peergate/peergate/origin/media"
)

// isMP4 sniffs an ISO-BMFF file: its first box is "ftyp".
func isMP4(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var b [8]byte
	if _, err := io.ReadFull(bufio.NewReader(f), b[:]); err != nil {
		return false, err
	}
	return string(b[4:8]) == "ftyp", nil
}

// mp4Sample is one sample placed on the file's timeline.
type mp4Sample struct {
	track    int // hub track
	dts, pts time.Duration
	dur      time.Duration
	s        *pmp4.Sample
	video    bool
}

// mp4Tracks maps the file's supported tracks to hub tracks; the index slice gives, per file
// track, the hub track or -1.
func mp4Tracks(p *pmp4.Presentation) ([]*media.Track, []int) {
	var tracks []*media.Track
	idx := make([]int, len(p.Tracks))
	for i, t := range p.Tracks {
		idx[i] = -1
		var f format.Format
		switch c := t.Codec.(type) {
		case *mp4codecs.H264:
			f = &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: c.SPS, PPS: c.PPS}
		case *mp4codecs.H265:
			f = &format.H265{PayloadTyp: 96, VPS: c.VPS, SPS: c.SPS, PPS: c.PPS}
		case *mp4codecs.MPEG4Audio:
			cfg := c.Config
			f = &format.MPEG4Audio{PayloadTyp: 97, Config: &cfg, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}
		case *mp4codecs.Opus:
			f = &format.Opus{PayloadTyp: 111, ChannelCount: c.ChannelCount}
		default:
			continue
		}
		idx[i] = len(tracks)
		tracks = append(tracks, &media.Track{Format: f})
	}
	return tracks, idx
}

// mp4Timeline lists the samples of supported tracks in decode order, starting at zero.
func mp4Timeline(p *pmp4.Presentation, idx []int) []mp4Sample {
	var all []mp4Sample
	for i, t := range p.Tracks {
		if idx[i] < 0 || t.TimeScale == 0 {
			continue
		}
		_, video := t.Codec.(*mp4codecs.H264)
		if _, ok := t.Codec.(*mp4codecs.H265); ok {
			video = true
		}
		ts := int(t.TimeScale)
		dts := int64(t.TimeOffset)
		for _, s := range t.Samples {
			d := media.FromClock(dts, ts)
			all = append(all, mp4Sample{
				track: idx[i], dts: d, pts: d + media.FromClock(int64(s.PTSOffset), ts),
				dur: media.FromClock(int64(s.Duration), ts), s: s, video: video,
			})
			dts += int64(s.Duration)
		}
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].dts < all[b].dts })
	if len(all) > 0 {
		base := all[0].dts
		for i := range all {
			all[i].dts -= base
			all[i].pts -= base
		}
	}
	return all
}

// scanMP4 reads the tracks of an MP4 file.
func scanMP4(path string) ([]*media.Track, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var p pmp4.Presentation
	if err := p.Unmarshal(f); err != nil {
		return nil, err
	}
	tracks, _ := mp4Tracks(&p)
	if len(tracks) == 0 {
		return nil, errors.New("no H.264, H.265, AAC or Opus track")
	}
	return tracks, nil
}

// passMP4 plays an MP4 file once; see pass.
func (s *Source) passMP4(start time.Time, offset time.Duration) (time.Duration, error) {
	f, err := os.Open(s.Path)
	if err != nil {
		return offset, err
	}
	defer f.Close()
	var p pmp4.Presentation
	if err := p.Unmarshal(f); err != nil {
		return offset, err
	}
	_, idx := mp4Tracks(&p)
	hub := s.st.Tracks()
	end := offset
	for _, smp := range mp4Timeline(&p, idx) {
		if smp.track >= len(hub) {
			continue
		}
		dts, pts := offset+smp.dts, offset+max(smp.pts, smp.dts)
		if d := time.Until(start.Add(dts)); d > 0 {
			select {
			case <-s.ctx.Done():
				return end, s.ctx.Err()
			case <-time.After(d):
			}
		}
		payload, err := smp.s.GetPayload()
		if err != nil {
			return end, err
		}
		u := media.Unit{Track: smp.track, PTS: pts, DTS: dts}
		if smp.video {
			var au h264.AVCC // H.265 samples are length-prefixed the same way
			if err := au.Unmarshal(payload); err != nil {
				continue
			}
			u.AU = au
		} else {
			u.Frame = payload
			u.PTS = dts
		}
		s.st.WriteUnit(u)
		end = max(end, dts+smp.dur)
	}
	return end, nil
}
