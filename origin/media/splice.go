package media

import (
	"bytes"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
)

// A relay copy (origin/ondemand) whose upstream dies pulls the stream again from another
// copy. Every copy carries the source's clock (clock.go), so the new pull can continue the
// very stream the old one fed, readers and all, instead of ending it: Stream.Splice.
//
// The new pull's timeline starts at its own zero. A Splice maps it onto the stream's with
// one offset per track, taken from the first unit of that track that carries the source
// clock: offset = (NTP - anchor) - PTS, so that the unit gets the PTS the stream's clock
// gives its NTP. Units that come before their track's offset is known (before the new
// upstream's first sender report) wait in a bounded queue.
//
// The new upstream starts its readers at its cached GOP, so its first units repeat ones the
// stream already carries. Per track, the Splice drops units up to the seam and writes from
// there:
//   - video: up to and including the unit whose NTP is that of the last unit written (the
//     same frame; the units after it are its exact continuation, so decoders go on without a
//     key frame), or, when that unit never comes (the upstream's GOP starts past it: frames
//     were lost in the gap), up to the first key frame after it;
//   - audio: every unit up to the last one written (audio units stand alone).
//
// NTPs of one frame on two copies differ by an RTP tick at most (fixed-point sender reports):
// seamTolerance absorbs that, and is far below any frame interval.

const (
	seamTolerance = 2 * time.Millisecond
	// splicePending bounds the units a Splice holds while it waits for the source clock.
	splicePending = 1024
)

// Splice continues a stream with a new source on the same source clock (Stream.Splice).
type Splice struct {
	s       *Stream
	off     []time.Duration // per track; valid once known[i]
	known   []bool
	passed  []bool // per track: the seam is behind
	main    int    // the track whose seam resumes the stream
	pending []Unit
	resumed chan struct{}
	done    bool // resumed was closed
	seam    Seam // how the main track passed its seam; set before resumed is closed
}

// Seam tells how a Splice joined the new source to the stream (Splice.Seam).
type Seam struct {
	// Continued: the new source repeated the last frame written and the stream went on
	// right after it, nothing lost. Otherwise it went on at a later key frame (a lost
	// stretch of the main track: Skipped long).
	Continued bool
	Skipped   time.Duration // source time between the last frame written and the next one
	Dropped   int           // units of the new source dropped as already written (or undecodable)
}

// Splice continues s with a new source whose tracks are tracks (the same codecs and
// parameters as the stream's, in the same order): the returned Splice's WriteUnit takes the
// new source's units on their own timeline. The stream must have carried its source's clock
// (units written with an NTP). ErrTracksDiffer, ErrNoSourceClock or ErrStreamClosed otherwise.
func (s *Stream) Splice(tracks []*Track) (*Splice, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrStreamClosed
	}
	if !s.clocked || s.clock.anchor.IsZero() {
		return nil, ErrNoSourceClock
	}
	if !SameTracks(s.tracks, tracks) {
		return nil, ErrTracksDiffer
	}
	n := len(s.tracks)
	sp := &Splice{
		s: s, off: make([]time.Duration, n), known: make([]bool, n), passed: make([]bool, n),
		main: max(s.videoTrack, 0), resumed: make(chan struct{}),
	}
	for i := range n {
		// A track this stream never carried has no seam.
		sp.passed[i] = s.last[i].IsZero()
	}
	if sp.passed[sp.main] {
		sp.resume()
	}
	return sp, nil
}

// Stream is the stream continued.
func (sp *Splice) Stream() *Stream { return sp.s }

// Seam is how the stream went on; valid once Resumed is closed.
func (sp *Splice) Seam() Seam {
	sp.s.mu.Lock()
	defer sp.s.mu.Unlock()
	return sp.seam
}

// Resumed is closed once the new source's units reach the stream's readers past the seam
// (on the video track, when there is one).
func (sp *Splice) Resumed() <-chan struct{} { return sp.resumed }

func (sp *Splice) resume() {
	if sp.done {
		return
	}
	sp.done = true
	close(sp.resumed)
	s := sp.s
	if s.announced {
		// The registry lists the copy again, with what feeds it now.
		s.t.emit(event{name: s.name, running: true, meta: s.lastMeta})
	}
}

// AwaitSourceClock does nothing: the stream has its source's clock already. (It makes a
// Splice a drop-in for the Stream a puller writes to.)
func (sp *Splice) AwaitSourceClock(time.Duration) {}

// WriteUnit writes a unit of the new source (PTS and DTS on the new source's timeline).
func (sp *Splice) WriteUnit(u Unit) {
	s := sp.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || u.Track < 0 || u.Track >= len(s.tracks) {
		return
	}
	if !sp.known[u.Track] {
		if u.NTP.IsZero() {
			if len(sp.pending) < splicePending {
				sp.pending = append(sp.pending, u)
			}
			return
		}
		sp.known[u.Track] = true
		sp.off[u.Track] = u.NTP.Sub(s.clock.anchor) - u.PTS
		// Units of this track that waited for the clock go first, in order.
		kept := sp.pending[:0]
		for _, p := range sp.pending {
			if p.Track == u.Track {
				sp.write(p)
			} else {
				kept = append(kept, p)
			}
		}
		clear(sp.pending[len(kept):])
		sp.pending = kept
	}
	sp.write(u)
}

// write maps u onto the stream's timeline and writes it if it is past its track's seam.
func (sp *Splice) write(u Unit) {
	s := sp.s
	off := sp.off[u.Track]
	u.PTS += off
	u.DTS += off
	if !sp.passed[u.Track] {
		tr := s.tracks[u.Track]
		ntp := u.NTP
		if ntp.IsZero() {
			ntp = s.clock.anchor.Add(u.PTS)
		}
		last := s.last[u.Track]
		if tr.IsVideo() {
			var key bool
			u.AU, key = fixParams(tr.Format, u.AU)
			switch {
			case ntp.Sub(last).Abs() <= seamTolerance:
				// The last frame written: continue after it.
				sp.pass(u.Track, Seam{Continued: true, Dropped: sp.seam.Dropped + 1})
				return
			case key && ntp.Sub(last) > seamTolerance:
				// The last frame is not coming: restart at a key frame.
				sp.pass(u.Track, Seam{Skipped: ntp.Sub(last), Dropped: sp.seam.Dropped})
			default:
				sp.drop(u.Track)
				return
			}
		} else {
			if ntp.Sub(last) <= seamTolerance {
				sp.drop(u.Track)
				return
			}
			sp.pass(u.Track, Seam{Continued: true, Dropped: sp.seam.Dropped})
		}
	}
	s.writeLocked(u)
}

func (sp *Splice) drop(track int) {
	if track == sp.main {
		sp.seam.Dropped++
	}
}

func (sp *Splice) pass(track int, seam Seam) {
	sp.passed[track] = true
	if track == sp.main {
		sp.seam = seam
		sp.resume()
	}
}

// SameTracks reports whether two track lists carry the same codecs with the same parameters
// in the same order, so that units of one can continue a stream of the other.
func SameTracks(a, b []*Track) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] == nil || b[i] == nil || !sameFormat(a[i].Format, b[i].Format) {
			return false
		}
	}
	return true
}

func sameFormat(a, b format.Format) bool {
	if a.ClockRate() != b.ClockRate() {
		return false
	}
	switch a := a.(type) {
	case *format.H264:
		b, ok := b.(*format.H264)
		if !ok {
			return false
		}
		as, ap := a.SafeParams()
		bs, bp := b.SafeParams()
		return sameParam(as, bs) && sameParam(ap, bp)
	case *format.H265:
		b, ok := b.(*format.H265)
		if !ok {
			return false
		}
		av, as, ap := a.SafeParams()
		bv, bs, bp := b.SafeParams()
		return sameParam(av, bv) && sameParam(as, bs) && sameParam(ap, bp)
	case *format.MPEG4Audio:
		b, ok := b.(*format.MPEG4Audio)
		if !ok || a.Config == nil || b.Config == nil {
			return false
		}
		ac, err1 := a.Config.Marshal()
		bc, err2 := b.Config.Marshal()
		return err1 == nil && err2 == nil && bytes.Equal(ac, bc)
	case *format.Opus:
		b, ok := b.(*format.Opus)
		return ok && a.ChannelCount == b.ChannelCount
	}
	return false
}

// sameParam compares parameter sets; one side unknown (out of band only in the other) is no
// difference: the units carry them in band, and WriteUnit takes them from there.
func sameParam(a, b []byte) bool {
	return len(a) == 0 || len(b) == 0 || bytes.Equal(a, b)
}

// SourceClocked reports whether the stream carries its source's own clock (units were
// written with an NTP), which Splice needs.
func (s *Stream) SourceClocked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clocked && !s.clock.anchor.IsZero()
}
