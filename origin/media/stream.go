package media

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/peergate/peergate/shared/cluster"
)

// Unit is one access unit of one track. Its byte slices are shared by every reader: read only.
type Unit struct {
	Track    int           // index into Stream.Tracks()
	PTS      time.Duration // presentation time on the stream's timeline
	DTS      time.Duration // decode time; grows; equal to PTS for audio
	NTP      time.Time     // source wall clock of PTS; WriteUnit stamps it (see Stream.AwaitSourceClock)
	AU       [][]byte      // video: NAL units of one access unit, no start codes
	Frame    []byte        // audio: one AAC access unit or one Opus packet
	KeyFrame bool          // video: random access point (set by WriteUnit)
}

func (u *Unit) size() int {
	n := len(u.Frame)
	for _, b := range u.AU {
		n += len(b)
	}
	return n
}

// Stream is one live NAME with its tracks, GOP cache and readers.
type Stream struct {
	t    *Table
	name string

	ready bool // guarded by t.mu

	mu         sync.Mutex
	tracks     []*Track
	videoTrack int // first video track, -1 if none
	readers    map[*Reader]struct{}
	gop        []Unit
	gopBytes   int
	gopValid   bool // gop starts at a key frame and is complete since
	announced  bool
	lastMeta   cluster.StreamMeta
	closed     bool
	done       chan struct{}
	lastSample time.Time
	lastBytes  int64
	clock      sourceClock
	last       []time.Time // per track: NTP of the last unit written (splice.go)
	clocked    bool        // some unit came with the source's own clock (splice.go)

	ingress atomic.Int64
	units   atomic.Int64
	viewers atomic.Int64
}

func newStream(t *Table, name string) *Stream {
	return &Stream{
		t:          t,
		name:       name,
		videoTrack: -1,
		readers:    map[*Reader]struct{}{},
		done:       make(chan struct{}),
	}
}

func (s *Stream) setTracks(tracks []*Track) {
	s.tracks = tracks
	s.last = make([]time.Time, len(tracks))
	for i, tr := range tracks {
		if tr.IsVideo() {
			s.videoTrack = i
			break
		}
	}
}

// Name is the stream's NAME.
func (s *Stream) Name() string { return s.name }

// Tracks are the stream's tracks, fixed for its life. Do not modify the slice.
func (s *Stream) Tracks() []*Track {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tracks
}

// Done is closed when the publisher leaves.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Viewers counts the stream's current viewers over all protocols (see Join).
func (s *Stream) Viewers() int64 { return s.viewers.Load() }

// IngressBytes counts payload bytes written so far.
func (s *Stream) IngressBytes() int64 { return s.ingress.Load() }

// Meta is the stream's current registry metadata.
func (s *Stream) Meta() cluster.StreamMeta {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := Meta(s.tracks)
	m.BitrateBps = s.lastMeta.BitrateBps
	return m
}

// WriteUnit hands one access unit to every reader; it never blocks on readers.
// Units for unknown tracks and empty units are ignored.
func (s *Stream) WriteUnit(u Unit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeLocked(u)
}

// writeLocked is WriteUnit with s.mu held.
func (s *Stream) writeLocked(u Unit) {
	if s.closed || u.Track < 0 || u.Track >= len(s.tracks) {
		return
	}
	tr := s.tracks[u.Track]
	if tr.IsVideo() {
		u.AU, u.KeyFrame = fixParams(tr.Format, u.AU)
		if len(u.AU) == 0 {
			return
		}
	} else {
		if len(u.Frame) == 0 {
			return
		}
		u.KeyFrame = false
		u.DTS = u.PTS
	}
	if !u.NTP.IsZero() {
		s.clocked = true
	}
	u.NTP = s.clock.stamp(u.NTP, u.PTS)
	s.last[u.Track] = u.NTP
	n := u.size()
	s.ingress.Add(int64(n))
	s.units.Add(1)

	isMainKey := u.Track == s.videoTrack && u.KeyFrame
	if !s.announced && (isMainKey || s.videoTrack < 0) {
		s.announced = true
		s.lastMeta = Meta(s.tracks)
		s.t.emit(event{name: s.name, running: true, meta: s.lastMeta})
	}
	s.cacheGOP(u, n, isMainKey)

	for r := range s.readers {
		if r.waitKey {
			if !isMainKey {
				continue
			}
			r.waitKey = false
		}
		select {
		case r.ch <- u:
		default:
			s.dropLocked(r, ErrSlowReader)
		}
	}
}

// AwaitSourceClock tells the stream that its source carries its own wall clock (an RTSP
// source's RTCP sender reports, PacketNTP): units written without one during the first d
// after the first unit keep a zero NTP instead of getting one invented here, so no output
// ever shows a clock the source later contradicts (HLS skips those units; RTSP sends no
// sender report for them). After d without a source clock the stream anchors its own.
// Call it after Publish, before the first WriteUnit.
func (s *Stream) AwaitSourceClock(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock.await = d
}

// cacheGOP keeps the units since the last key frame of the main video track, within GOPCacheBytes.
func (s *Stream) cacheGOP(u Unit, n int, isMainKey bool) {
	if s.videoTrack < 0 {
		return
	}
	if isMainKey {
		clear(s.gop)
		s.gop = s.gop[:0]
		s.gopBytes = 0
		s.gopValid = true
	}
	if !s.gopValid {
		return
	}
	if s.gopBytes+n > s.t.cfg.GOPCacheBytes || len(s.gop) >= maxGOPUnits {
		// Too long a GOP: forget it; new readers wait for the next key frame.
		clear(s.gop)
		s.gop = s.gop[:0]
		s.gopBytes = 0
		s.gopValid = false
		return
	}
	s.gop = append(s.gop, u)
	s.gopBytes += n
}

// maxGOPUnits keeps a cached GOP shorter than a reader queue.
const maxGOPUnits = 900

// PrepareAU refreshes the format's (H.264/H.265) parameter sets from in-band NAL units and
// prepends them to a key frame that lacks them; it reports whether au is a random access
// point. WriteUnit calls it; depacketizers call it before a DTS extractor that needs the SPS.
func PrepareAU(f format.Format, au [][]byte) ([][]byte, bool) { return fixParams(f, au) }

func fixParams(f format.Format, au [][]byte) ([][]byte, bool) {
	au = dropEmpty(au)
	if len(au) == 0 {
		return au, false
	}
	switch f := f.(type) {
	case *format.H264:
		var sps, pps []byte
		for _, n := range au {
			if len(n) == 0 {
				continue
			}
			switch h264.NALUType(n[0] & 0x1f) {
			case h264.NALUTypeSPS:
				sps = n
			case h264.NALUTypePPS:
				pps = n
			}
		}
		curSPS, curPPS := f.SafeParams()
		if (sps != nil && string(sps) != string(curSPS)) || (pps != nil && string(pps) != string(curPPS)) {
			if sps == nil {
				sps = curSPS
			}
			if pps == nil {
				pps = curPPS
			}
			f.SafeSetParams(sps, pps)
			curSPS, curPPS = sps, pps
		}
		key := h264.IsRandomAccess(au)
		if key && (sps == nil || pps == nil) && curSPS != nil && curPPS != nil {
			out := make([][]byte, 0, len(au)+2)
			out = append(out, curSPS, curPPS)
			for _, n := range au {
				if len(n) > 0 {
					t := h264.NALUType(n[0] & 0x1f)
					if t == h264.NALUTypeSPS || t == h264.NALUTypePPS {
						continue
					}
				}
				out = append(out, n)
			}
			au = out
		}
		return au, key

	case *format.H265:
		var vps, sps, pps []byte
		for _, n := range au {
			if len(n) < 2 {
				continue
			}
			switch h265.NALUType((n[0] >> 1) & 0x3f) {
			case h265.NALUType_VPS_NUT:
				vps = n
			case h265.NALUType_SPS_NUT:
				sps = n
			case h265.NALUType_PPS_NUT:
				pps = n
			}
		}
		cv, cs, cp := f.SafeParams()
		if (vps != nil && string(vps) != string(cv)) || (sps != nil && string(sps) != string(cs)) ||
			(pps != nil && string(pps) != string(cp)) {
			if vps == nil {
				vps = cv
			}
			if sps == nil {
				sps = cs
			}
			if pps == nil {
				pps = cp
			}
			f.SafeSetParams(vps, sps, pps)
			cv, cs, cp = vps, sps, pps
		}
		key := h265.IsRandomAccess(au)
		if key && (vps == nil || sps == nil || pps == nil) && cv != nil && cs != nil && cp != nil {
			out := make([][]byte, 0, len(au)+3)
			out = append(out, cv, cs, cp)
			for _, n := range au {
				if len(n) >= 2 {
					t := h265.NALUType((n[0] >> 1) & 0x3f)
					if t == h265.NALUType_VPS_NUT || t == h265.NALUType_SPS_NUT || t == h265.NALUType_PPS_NUT {
						continue
					}
				}
				out = append(out, n)
			}
			au = out
		}
		return au, key
	}
	return au, false
}

// dropEmpty removes zero-length NAL units, which the codec helpers do not expect.
func dropEmpty(au [][]byte) [][]byte {
	for i, n := range au {
		if len(n) == 0 {
			out := append([][]byte(nil), au[:i]...)
			for _, m := range au[i+1:] {
				if len(m) > 0 {
					out = append(out, m)
				}
			}
			return out
		}
	}
	return au
}

// Close ends the stream: the NAME is free again, readers get io.EOF, Events get StreamStopped.
func (s *Stream) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	for r := range s.readers {
		s.dropLocked(r, io.EOF)
	}
	s.gop = nil
	if s.announced {
		s.t.emit(event{name: s.name})
	}
	s.mu.Unlock()
	s.t.remove(s)
}

// measure refreshes the bitrate every MetaInterval and re-announces on a notable change.
func (s *Stream) measure(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.announced {
		return
	}
	total := s.ingress.Load()
	if s.lastSample.IsZero() {
		s.lastSample, s.lastBytes = now, total
		return
	}
	el := now.Sub(s.lastSample)
	if el < s.t.cfg.MetaInterval {
		return
	}
	bps := int64(float64(total-s.lastBytes) * 8 / el.Seconds())
	s.lastSample, s.lastBytes = now, total
	old := s.lastMeta.BitrateBps
	m := Meta(s.tracks)
	m.BitrateBps = bps
	// Resolution or codec changes (new SPS) count as notable too.
	changed := m.Codecs != s.lastMeta.Codecs || m.Width != s.lastMeta.Width || m.Height != s.lastMeta.Height
	if old == 0 || changed || bps > old*5/4 || bps < old*3/4 {
		s.lastMeta = m
		s.t.emit(event{name: s.name, running: true, meta: m})
	}
}

// ReaderOptions tunes one reader.
type ReaderOptions struct {
	// QueueLen bounds the reader's queue in units. It defaults to 1024.
	QueueLen int
}

// AddReader attaches a reader that starts at the cached GOP (or the next key frame).
func (s *Stream) AddReader(opts ReaderOptions) (*Reader, error) {
	if opts.QueueLen <= 0 {
		opts.QueueLen = 1024
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrStreamClosed
	}
	if len(s.readers) >= s.t.cfg.MaxReaders {
		return nil, ErrTooManyReaders
	}
	r := &Reader{s: s, ch: make(chan Unit, opts.QueueLen)}
	if s.videoTrack >= 0 {
		if s.gopValid && len(s.gop) > 0 && len(s.gop) <= opts.QueueLen/2 {
			for _, u := range s.gop {
				r.ch <- u
			}
		} else {
			r.waitKey = true
		}
	}
	s.readers[r] = struct{}{}
	return r, nil
}

// dropLocked detaches r with err; s.mu is held, so no WriteUnit is sending on r.ch.
func (s *Stream) dropLocked(r *Reader, err error) {
	if _, ok := s.readers[r]; !ok {
		return
	}
	delete(s.readers, r)
	r.err = err
	close(r.ch)
}

// Readers counts attached readers.
func (s *Stream) Readers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.readers)
}
