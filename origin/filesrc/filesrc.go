// Package filesrc loops an MPEG-TS or MP4 file in real time as a live stream of the media table.
package filesrc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/peergate/peergate/origin/media"
)

// Source publishes one file as NAME, looping forever with timestamps that keep growing.
type Source struct {
	// Name is the stream NAME. Required.
	Name string
	// Path is an MPEG-TS or MP4 file (told apart by content) with H.264/H.265 video and/or
	// AAC/Opus audio. Required.
	Path string
	// Table is the stream table. Required.
	Table *media.Table
	// RetryDelay is the pause before reopening a file that failed mid-loop. It defaults to 1 second.
	RetryDelay time.Duration
	// Logger gets one line per connection outcome. It defaults to slog.Default().
	Logger *slog.Logger

	st     *media.Stream
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	loops  int
	mu     sync.Mutex
	skew   int64 // how far (90 kHz) the earliest timestamp lies before the first one read
	mp4    bool
}

// maxScanPES bounds the look-ahead for parameter sets when the file is opened.
const maxScanPES = 2000

// skewScanPES is how many PES at the start are read to find the earliest timestamp.
const skewScanPES = 300

// Start checks the file, publishes NAME (media.ErrAlreadyPublishing if it is live) and starts looping.
func (s *Source) Initialize() error {
	if s.Table == nil || s.Name == "" || s.Path == "" {
		return errors.New("filesrc: Name, Path and Table are required")
	}
	if s.RetryDelay <= 0 {
		s.RetryDelay = time.Second
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	mp4, err := isMP4(s.Path)
	if err != nil {
		return fmt.Errorf("filesrc %s: %w", s.Path, err)
	}
	var tracks []*media.Track
	var skew int64
	if mp4 {
		tracks, err = scanMP4(s.Path)
	} else {
		tracks, skew, err = scanTracks(s.Path)
	}
	if err != nil {
		return fmt.Errorf("filesrc %s: %w", s.Path, err)
	}
	s.mp4 = mp4
	st, err := s.Table.Publish(s.Name, tracks)
	if err != nil {
		return fmt.Errorf("filesrc %s: %w", s.Name, err)
	}
	s.st, s.skew = st, skew
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.run()
	s.Logger.Info("file source started", "name", s.Name, "path", s.Path, "codecs", st.Meta().Codecs)
	return nil
}

// Close stops the loop and ends the stream.
func (s *Source) Close() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.wg.Wait()
	s.st.Close()
}

// Loops counts completed passes over the file.
func (s *Source) Loops() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loops
}

func (s *Source) run() {
	defer s.wg.Done()
	// clock maps stream time to wall time: unit at stream time t is due at start + t.
	start := time.Now()
	var offset time.Duration // stream time of the current pass's first unit
	for s.ctx.Err() == nil {
		pass := s.pass
		if s.mp4 {
			pass = s.passMP4
		}
		end, err := pass(start, offset)
		if s.ctx.Err() != nil {
			return
		}
		if err != nil {
			s.Logger.Warn("file source pass failed", "name", s.Name, "path", s.Path, "err", err)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(s.RetryDelay):
			}
			// Keep the timeline growing: resume where wall time says we are.
			end = max(end, time.Since(start))
		} else {
			s.mu.Lock()
			s.loops++
			s.mu.Unlock()
		}
		if end <= offset {
			end = offset + time.Second // an empty file must not spin
		}
		offset = end
	}
}

// pass plays the file once, units shifted by offset, paced on start; it returns the stream
// time where the next pass must begin (the end of the longest track).
func (s *Source) pass(start time.Time, offset time.Duration) (time.Duration, error) {
	f, err := os.Open(s.Path)
	if err != nil {
		return offset, err
	}
	defer f.Close()
	r := &mpegts.Reader{R: bufio.NewReaderSize(f, 64<<10)}
	if err := r.Initialize(); err != nil {
		return offset, err
	}
	r.OnDecodeError(func(error) {})

	var td mpegts.TimeDecoder
	td.Initialize()
	hubTracks := s.st.Tracks()
	end := offset
	// The decoder counts from the first timestamp read; skew lifts the earliest one to 0 so
	// nothing of this pass lands before offset.
	toStream := func(ts int64) time.Duration {
		return offset + media.FromClock(max(td.Decode(ts)+s.skew, 0), 90000)
	}
	pace := func(dts time.Duration) error {
		if d := time.Until(start.Add(dts)); d > 0 {
			select {
			case <-s.ctx.Done():
				return s.ctx.Err()
			case <-time.After(d):
			}
		}
		return nil
	}

	idx := 0
	for _, t := range r.Tracks() {
		if idx >= len(hubTracks) {
			break
		}
		ti := idx
		hf := hubTracks[ti].Format
		switch t.Codec.(type) {
		case *tscodecs.H264, *tscodecs.H265:
			if _, ok := hf.(*format.H264); !ok {
				if _, ok := hf.(*format.H265); !ok {
					continue
				}
			}
			var lastDTS time.Duration
			onAU := func(pts, dts int64, au [][]byte) error {
				// DTS first: it is the earlier of the two and sets the base.
				d := toStream(dts)
				p := d + media.FromClock(pts-dts, 90000)
				if err := pace(d); err != nil {
					return err
				}
				s.st.WriteUnit(media.Unit{Track: ti, PTS: p, DTS: d, AU: au})
				step := d - lastDTS
				if lastDTS == 0 || step <= 0 || step > time.Second {
					step = 40 * time.Millisecond
				}
				lastDTS = d
				end = max(end, d+step)
				return nil
			}
			if _, ok := t.Codec.(*tscodecs.H264); ok {
				r.OnDataH264(t, onAU)
			} else {
				r.OnDataH265(t, onAU)
			}
			idx++
		case *tscodecs.MPEG4Audio:
			mf, ok := hf.(*format.MPEG4Audio)
			if !ok {
				continue
			}
			rate := mf.Config.SampleRate
			r.OnDataMPEG4Audio(t, func(pts int64, aus [][]byte) error {
				p := toStream(pts)
				if err := pace(p); err != nil {
					return err
				}
				for i, au := range aus {
					at := p + media.FromClock(int64(i)*mpeg4audio.SamplesPerAccessUnit, rate)
					s.st.WriteUnit(media.Unit{Track: ti, PTS: at, DTS: at, Frame: au})
					end = max(end, at+media.FromClock(mpeg4audio.SamplesPerAccessUnit, rate))
				}
				return nil
			})
			idx++
		case *tscodecs.Opus:
			if _, ok := hf.(*format.Opus); !ok {
				continue
			}
			r.OnDataOpus(t, func(pts int64, packets [][]byte) error {
				p := toStream(pts)
				if err := pace(p); err != nil {
					return err
				}
				at := p
				for _, pkt := range packets {
					s.st.WriteUnit(media.Unit{Track: ti, PTS: at, DTS: at, Frame: pkt})
					at += 20 * time.Millisecond // packet duration is in the TOC; 20 ms is the common case
				}
				end = max(end, at)
				return nil
			})
			idx++
		}
	}

	for {
		if err := r.Read(); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return end, nil
			}
			return end, err
		}
	}
}

// scanTracks reads the file's tracks and, for video, the first parameter sets, so readers
// joining before the first key frame still get a complete codec description; it also
// measures how far timestamps near the start reach back before the first one (interleaving
// skew), in the same order pass decodes them.
func scanTracks(path string) ([]*media.Track, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	r := &mpegts.Reader{R: bufio.NewReaderSize(f, 64<<10)}
	if err := r.Initialize(); err != nil {
		return nil, 0, err
	}
	r.OnDecodeError(func(error) {})
	var td mpegts.TimeDecoder
	td.Initialize()
	var minTS int64
	seen := func(ts int64) { minTS = min(minTS, td.Decode(ts)) }
	var tracks []*media.Track
	var need []func() bool
	for _, t := range r.Tracks() {
		switch c := t.Codec.(type) {
		case *tscodecs.H264:
			hf := &format.H264{PayloadTyp: 96, PacketizationMode: 1}
			tracks = append(tracks, &media.Track{Format: hf})
			r.OnDataH264(t, func(_, dts int64, au [][]byte) error {
				seen(dts)
				media.PrepareAU(hf, au)
				return nil
			})
			need = append(need, func() bool { s, p := hf.SafeParams(); return s == nil || p == nil })
		case *tscodecs.H265:
			hf := &format.H265{PayloadTyp: 96}
			tracks = append(tracks, &media.Track{Format: hf})
			r.OnDataH265(t, func(_, dts int64, au [][]byte) error {
				seen(dts)
				media.PrepareAU(hf, au)
				return nil
			})
			need = append(need, func() bool { v, s, p := hf.SafeParams(); return v == nil || s == nil || p == nil })
		case *tscodecs.MPEG4Audio:
			cfg := c.Config
			tracks = append(tracks, &media.Track{Format: &format.MPEG4Audio{
				PayloadTyp: 97, Config: &cfg, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3,
			}})
			r.OnDataMPEG4Audio(t, func(pts int64, _ [][]byte) error { seen(pts); return nil })
		case *tscodecs.Opus:
			ch := c.ChannelCount
			if c.Desc != nil {
				ch = c.Desc.ChannelCount()
			}
			if ch == 0 {
				ch = 2
			}
			tracks = append(tracks, &media.Track{Format: &format.Opus{PayloadTyp: 111, ChannelCount: ch}})
			r.OnDataOpus(t, func(pts int64, _ [][]byte) error { seen(pts); return nil })
		}
	}
	if len(tracks) == 0 {
		return nil, 0, errors.New("no H.264, H.265, AAC or Opus track")
	}
	missing := func() bool {
		for _, n := range need {
			if n() {
				return true
			}
		}
		return false
	}
	// Read at least skewScanPES PES (for the skew) and on until the parameter sets are known.
	for i := 0; i < maxScanPES && (i < skewScanPES || missing()); i++ {
		if err := r.Read(); err != nil {
			break
		}
	}
	if missing() {
		return nil, 0, errors.New("no video parameter sets near the start of the file")
	}
	return tracks, -minTS, nil
}
