package httpsrv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"

	"github.com/peergate/peergate/origin/media"
)

// tsOffset keeps muxed timestamps positive: B-frame DTS can precede a stream's zero PTS.
const tsOffset = 10 * time.Second

// cutTolerance is how much earlier than hls.segment_duration after a segment's start a key
// frame still cuts. Timestamps from the source clock reach a relay through RTCP's fixed-point
// NTP and come out a tick early or late; without the tolerance, key frames exactly
// segment_duration apart would cut on one copy and run on to the next key frame on another.
// It is well under one frame at any frame rate.
const cutTolerance = 5 * time.Millisecond

// cutAt is the SegmentMinDuration gohlslib gets for a segment duration d.
func cutAt(d time.Duration) time.Duration {
	if d > 2*cutTolerance {
		return d - cutTolerance
	}
	return d
}

// sourcePTS is the HLS timestamp of a unit presented at ntp on the source's clock: the time
// since the Unix epoch in the track's clock rate. Every copy of a stream (owner, relays,
// relays of relays) reads the same clock, so each writes the same PTS for the same frame,
// and a player that moves between copies (content steering) finds the media it buffered at
// the same place on its timeline; the owner's own stream time or a relay's pull start would
// give every copy another zero. MPEG-TS keeps 33 bits of it (in a 90 kHz clock it wraps
// every 26.5 hours, at the same instant on every copy; players handle the wrap); fMP4 keeps
// all 64. Far from zero, a B-frame's DTS never goes negative.
func sourcePTS(ntp time.Time, rate int) int64 {
	d := ntp.Sub(time.Unix(0, 0))
	// To the nearest tick: the owner's and a relay's times for one frame differ by a few
	// nanoseconds at most, which rounding down could turn into a whole tick.
	return media.ToClock(d+time.Second/time.Duration(2*rate), rate)
}

// hlsManager owns one gohlslib Muxer per live stream, each fed by one hub reader however
// many HLS viewers there are.
type hlsManager struct {
	s *Server

	mu     sync.Mutex
	m      map[string]*hlsMuxer
	closed bool
}

type hlsMuxer struct {
	st    *media.Stream
	rd    *media.Reader
	mux   *gohlslib.Muxer
	keep  *retainer       // removed segments, kept for their RFC 8216 period
	lead  *gohlslib.Track // the track whose writes rotate segments
	ready chan struct{}   // closed once the first segment exists
	done  chan struct{}   // closed when the muxer stopped

	seqReady  chan struct{} // closed once seqOffset is final (hlsseq.go)
	seqOffset int           // added to gohlslib's media sequence numbers in served playlists
}

func newHLSManager(s *Server) *hlsManager {
	return &hlsManager{s: s, m: map[string]*hlsMuxer{}}
}

func (hm *hlsManager) count() int {
	hm.mu.Lock()
	defer hm.mu.Unlock()
	return len(hm.m)
}

// get returns the running muxer of name, nil if there is none; it starts none.
func (hm *hlsManager) get(name string) *hlsMuxer {
	hm.mu.Lock()
	defer hm.mu.Unlock()
	return hm.m[name]
}

// ensure returns the running muxer of st, starting one if needed.
func (hm *hlsManager) ensure(st *media.Stream) (*hlsMuxer, error) {
	hm.mu.Lock()
	defer hm.mu.Unlock()
	if hm.closed {
		return nil, errors.New("server closed")
	}
	if mx := hm.m[st.Name()]; mx != nil && mx.st == st {
		return mx, nil
	}
	mx, err := hm.start(st)
	if err != nil {
		return nil, err
	}
	hm.m[st.Name()] = mx
	return mx, nil
}

// start builds and runs a muxer; hm.mu is held.
func (hm *hlsManager) start(st *media.Stream) (*hlsMuxer, error) {
	cfg := hm.s.HLS
	tracks, byHub, variant := hlsTracks(st.Tracks(), cfg.Variant)
	if len(tracks) == 0 {
		return nil, errors.New("no track HLS can carry")
	}
	log := hm.s.Logger.With("stream", st.Name())
	mux := &gohlslib.Muxer{
		Tracks:             tracks,
		Variant:            variant,
		SegmentCount:       cfg.SegmentCount,
		SegmentMinDuration: cutAt(cfg.SegmentDuration),
		PartMinDuration:    cfg.PartDuration,
		SegmentMaxSize:     cfg.SegmentMaxBytes,
		OnEncodeError:      func(err error) { log.Debug("hls encode", "err", err) },
	}
	if err := mux.Start(); err != nil {
		return nil, err
	}
	rd, err := st.AddReader(media.ReaderOptions{})
	if err != nil {
		mux.Close()
		return nil, err
	}
	mx := &hlsMuxer{
		st: st, rd: rd, mux: mux, lead: leadTrack(tracks),
		keep:  newRetainer(mux, cfg.SegmentCount, cfg.SegmentMaxBytes),
		ready: make(chan struct{}), done: make(chan struct{}), seqReady: make(chan struct{}),
	}
	hm.s.wg.Add(3)
	go func() {
		defer hm.s.wg.Done()
		hm.alignSequence(mx, log)
	}()
	go func() {
		defer hm.s.wg.Done()
		hm.feed(mx, byHub, log)
	}()
	go func() {
		defer hm.s.wg.Done()
		mx.probe()
	}()
	log.Debug("hls muxer started", "variant", variantName(variant), "tracks", len(tracks))
	return mx, nil
}

// feed copies units into the muxer until the stream ends or the reader is dropped.
func (hm *hlsManager) feed(mx *hlsMuxer, byHub map[int]*gohlslib.Track, log *slog.Logger) {
	defer func() {
		mx.rd.Close()
		mx.mux.Close() // wakes requests blocked inside gohlslib
		hm.mu.Lock()
		if hm.m[mx.st.Name()] == mx {
			delete(hm.m, mx.st.Name())
		}
		hm.mu.Unlock()
		close(mx.done)
	}()
	var failed, skipped int
	// An audio-only stream rotates on any unit SegmentDuration after the segment start:
	// syncing at least every half of it sees every rotation.
	leadVideo := mx.lead.Codec.IsVideo()
	syncEvery := hm.s.HLS.SegmentDuration / 2
	var lastSync time.Duration
	synced := false
	for {
		u, err := mx.rd.Read(hm.s.ctx)
		if err != nil {
			log.Info("hls muxer stopped", "reason", reason(err), "encode_errors", failed, "unclocked_units", skipped)
			return
		}
		tr := byHub[u.Track]
		if tr == nil {
			continue
		}
		ntp := u.NTP
		if ntp.IsZero() {
			// The stream awaits its source's clock (a relay before the upstream's first
			// sender report): a segment must not start on a clock the source will contradict.
			skipped++
			continue
		}
		if tr == mx.lead && isReady(mx) {
			var due bool
			if leadVideo {
				due = u.KeyFrame // gohlslib rotates on key frames of the leading video track only
			} else {
				due = !synced || u.DTS-lastSync >= syncEvery || u.DTS < lastSync
			}
			if due {
				mx.keep.sync(time.Now())
				lastSync, synced = u.DTS, true
			}
		}
		pts := sourcePTS(ntp, tr.ClockRate)
		switch tr.Codec.(type) {
		case *codecs.H264:
			err = mx.mux.WriteH264(tr, ntp, pts, u.AU)
		case *codecs.H265:
			err = mx.mux.WriteH265(tr, ntp, pts, u.AU)
		case *codecs.MPEG4Audio:
			err = mx.mux.WriteMPEG4Audio(tr, ntp, pts, [][]byte{u.Frame})
		case *codecs.Opus:
			err = mx.mux.WriteOpus(tr, ntp, pts, [][]byte{u.Frame})
		}
		if err != nil {
			if failed == 0 {
				log.Info("hls muxer write", "err", err)
			}
			failed++
		}
	}
}

func isReady(mx *hlsMuxer) bool {
	select {
	case <-mx.ready:
		return true
	default:
		return false
	}
}

// leadTrack is the track gohlslib segments on: the video track, else the first.
func leadTrack(tracks []*gohlslib.Track) *gohlslib.Track {
	for _, t := range tracks {
		if t.Codec.IsVideo() {
			return t
		}
	}
	return tracks[0]
}

// probe closes ready once gohlslib has a first segment: its multivariant playlist handler
// blocks until then (or until Close), so one internal request tells us exactly when.
func (mx *hlsMuxer) probe() {
	pw := &probeWriter{h: http.Header{}}
	req := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "index.m3u8"}, Header: http.Header{}}
	mx.mux.Handle(pw, req)
	if pw.status == http.StatusOK {
		close(mx.ready)
	}
}

type probeWriter struct {
	h      http.Header
	status int
}

func (p *probeWriter) Header() http.Header { return p.h }
func (p *probeWriter) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}

func (p *probeWriter) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

// closeAll stops every muxer; the feed goroutines exit and Server.wg sees them.
func (hm *hlsManager) closeAll() {
	hm.mu.Lock()
	hm.closed = true
	all := make([]*hlsMuxer, 0, len(hm.m))
	for _, mx := range hm.m {
		all = append(all, mx)
	}
	hm.mu.Unlock()
	for _, mx := range all {
		mx.rd.Close()
	}
}

// hlsTracks picks the first video and the first audio track (what one HLS rendition
// carries) and the variant their codecs allow.
func hlsTracks(in []*media.Track, want string) ([]*gohlslib.Track, map[int]*gohlslib.Track, gohlslib.MuxerVariant) {
	var out []*gohlslib.Track
	byHub := map[int]*gohlslib.Track{}
	tsOK := true
	var haveVideo, haveAudio bool
	for i, t := range in {
		c := t.HLSCodec()
		if c == nil || (t.IsVideo() && haveVideo) || (!t.IsVideo() && haveAudio) {
			continue
		}
		switch c.(type) {
		case *codecs.H264, *codecs.MPEG4Audio:
		default:
			tsOK = false
		}
		if t.IsVideo() {
			haveVideo = true
		} else {
			haveAudio = true
		}
		tr := &gohlslib.Track{Codec: c, ClockRate: t.ClockRate()}
		out = append(out, tr)
		byHub[i] = tr
	}
	v := gohlslib.MuxerVariantMPEGTS
	switch want {
	case VariantFMP4:
		v = gohlslib.MuxerVariantFMP4
	case VariantLowLatency:
		v = gohlslib.MuxerVariantLowLatency
	}
	if v == gohlslib.MuxerVariantMPEGTS && !tsOK {
		v = gohlslib.MuxerVariantFMP4 // MPEG-TS HLS carries H.264 and AAC only
	}
	return out, byHub, v
}

func variantName(v gohlslib.MuxerVariant) string {
	switch v {
	case gohlslib.MuxerVariantMPEGTS:
		return VariantMPEGTS
	case gohlslib.MuxerVariantFMP4:
		return VariantFMP4
	}
	return VariantLowLatency
}

// serveHLS answers index.m3u8, media playlists and segments (of kind streamname.HLSSegment)
// from the stream's muxer.
func (s *Server) serveHLS(w http.ResponseWriter, r *http.Request, name string, segment bool) {
	st := s.findStream(w, r, name)
	if st == nil {
		return
	}
	v, done := s.sessions.begin(st, clientIP(r), r.UserAgent())
	if done == nil {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many viewers", http.StatusServiceUnavailable)
		return
	}
	defer done()
	mx, err := s.hls.ensure(st)
	if err != nil {
		s.Logger.Warn("hls muxer", "stream", name, "err", err)
		http.Error(w, "stream cannot be served over HLS", http.StatusServiceUnavailable)
		return
	}
	select {
	case <-mx.ready:
	default:
		// A first request waits for the first segment, within a bound.
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Now().Add(s.HLS.FirstSegmentTimeout + s.WriteTimeout))
		t := time.NewTimer(s.HLS.FirstSegmentTimeout)
		defer t.Stop()
		select {
		case <-mx.ready:
			_ = rc.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		case <-mx.done:
			select {
			case <-st.Done():
				http.Error(w, "stream ended", http.StatusNotFound)
			default:
				w.Header().Set("Retry-After", "1")
				http.Error(w, "stream restarting", http.StatusServiceUnavailable)
			}
			return
		case <-t.C:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "no segment yet", http.StatusServiceUnavailable)
			return
		case <-r.Context().Done():
			return
		}
	}
	// A relay's playlists wait for its sequence numbers (bounded by seqAlignTimeout).
	select {
	case <-mx.seqReady:
	case <-r.Context().Done():
		return
	}
	cw := &countingWriter{ResponseWriter: w}
	switch {
	case segment:
		mx.serveFile(cw, r)
	case mx.seqOffset != 0 && fileName(r.URL.Path) != "index.m3u8":
		mx.serveShiftedPlaylist(cw, r)
	default:
		mx.mux.Handle(cw, r)
	}
	if !cw.wrote {
		// gohlslib answers nothing for files it does not have (expired segment, bad name).
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if v != nil {
		v.Sent(int(cw.n))
	} else {
		s.Table.AddEgress(media.ProtoHLS, cw.n)
	}
}

// countingWriter counts body bytes and notes whether anything was answered.
type countingWriter struct {
	http.ResponseWriter
	n     int64
	wrote bool
}

func (c *countingWriter) WriteHeader(code int) {
	c.wrote = true
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	c.wrote = true
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// reason names why a reader ended, for logs.
func reason(err error) string {
	switch {
	case errors.Is(err, io.EOF):
		return "stream_ended"
	case errors.Is(err, media.ErrSlowReader):
		return "slow_reader"
	case errors.Is(err, media.ErrReaderClosed), errors.Is(err, context.Canceled):
		return "closed"
	}
	return fmt.Sprint(err)
}
