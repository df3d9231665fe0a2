package httpsrv

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// retainer keeps media segments fetchable after gohlslib drops them, as RFC 8216 section
// 6.2.2 asks: "When the server removes a Media Segment URI from the Playlist, the
// corresponding Media Segment MUST remain available to clients for a period of time equal
// to the duration of the segment plus the duration of the longest Playlist file distributed
// by the server containing that segment."
//
// gohlslib v2.4.0 deletes a segment's bytes in the very rotation that removes it from the
// playlist (muxerStream.rotateSegments), and has no setting to keep more segments than it
// lists: a client that fetched a playlist just before a rotation got 404 for its oldest
// segment. Keeping a larger SegmentCount and trimming the playlists we serve would hold
// segments for a number of rotations, not for a time (and LL-HLS playlists, with parts,
// skips and gaps, are not ours to rewrite).
//
// So the retainer copies a segment just before gohlslib can drop it and serves the copy for
// exactly what the RFC asks. Segments rotate only inside a Write of the leading track (its
// key frames; any unit of an audio-only stream), and only the feed goroutine writes, so
// sync, called by that goroutine before such a write, sees every playlist state: it copies
// the oldest segment of each media playlist (the one the next rotation drops) and, once a
// segment is no longer listed, keeps its copy for its duration plus the longest playlist it
// was seen in, counted from when sync noticed (at or after the removal). sync starts once
// ready is closed (gohlslib's playlist handlers would block before): the first removal
// comes SegmentCount rotations after the first segment, seconds after ready.
//
// Memory: one copy per media playlist of the segment about to go (also still held by
// gohlslib), plus the removed segments within their RFC period: with segments of steady
// duration, about SegmentCount+2 per media playlist. max caps the entries whatever the
// durations; the earliest to expire go first. Each copy is one segment, which gohlslib
// already caps (SegmentMaxBytes).
type retainer struct {
	mux   *gohlslib.Muxer
	max   int // kept segments
	limit int // bytes of one copied file

	// owned by the feed goroutine
	playlists []string                  // media playlist names, from index.m3u8
	listed    map[string]*listedSegInfo // segments of the latest playlists

	mu   sync.Mutex
	kept map[string]*keptSegment
}

type listedSegInfo struct {
	dur     time.Duration // EXTINF
	longest time.Duration // the longest playlist it was listed in
	seen    bool          // in the playlists of this sync
}

type keptSegment struct {
	data  []byte
	hdr   http.Header // gohlslib's Content-Type and Cache-Control
	until time.Time   // zero while the segment is still listed
}

func newRetainer(mux *gohlslib.Muxer, segmentCount int, segmentMaxBytes uint64) *retainer {
	return &retainer{
		mux:    mux,
		max:    2 * (2*segmentCount + 4), // twice the steady state of two media playlists
		limit:  captureLimit(segmentMaxBytes),
		listed: map[string]*listedSegInfo{},
		kept:   map[string]*keptSegment{},
	}
}

// sync runs on the feed goroutine before a write that may rotate segments, once the muxer
// has its first segment (so gohlslib's playlist handlers answer without waiting).
func (rt *retainer) sync(now time.Time) {
	if rt.playlists == nil {
		rt.playlists = rt.mediaPlaylists()
	}
	for _, li := range rt.listed {
		li.seen = false
	}
	for _, name := range rt.playlists {
		rt.syncPlaylist(name)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for name, li := range rt.listed {
		if li.seen {
			continue
		}
		// Removed from the playlist: the RFC period starts (at the latest) now.
		if k := rt.kept[name]; k != nil && k.until.IsZero() {
			k.until = now.Add(li.dur + li.longest)
		}
		delete(rt.listed, name)
	}
	for name, k := range rt.kept {
		if !k.until.IsZero() && now.After(k.until) {
			delete(rt.kept, name)
		}
	}
	for len(rt.kept) > rt.max {
		var first string
		for name, k := range rt.kept {
			if !k.until.IsZero() && (first == "" || k.until.Before(rt.kept[first].until)) {
				first = name
			}
		}
		if first == "" {
			break
		}
		delete(rt.kept, first)
	}
}

// mediaPlaylists reads the media playlist names from gohlslib's index.m3u8.
func (rt *retainer) mediaPlaylists() []string {
	b, _, err := rt.fetch("index.m3u8")
	if err != nil {
		return nil
	}
	var mv playlist.Multivariant
	if err := mv.Unmarshal(b); err != nil {
		return nil
	}
	var out []string
	for _, v := range mv.Variants {
		out = append(out, fileName(v.URI))
	}
	for _, r := range mv.Renditions {
		if r.URI != nil {
			out = append(out, fileName(*r.URI))
		}
	}
	return out
}

func (rt *retainer) syncPlaylist(name string) {
	b, _, err := rt.fetch(name)
	if err != nil {
		return
	}
	var pl playlist.Media
	if err := pl.Unmarshal(b); err != nil {
		return
	}
	var total time.Duration
	for _, s := range pl.Segments {
		total += s.Duration
	}
	oldest := ""
	for _, s := range pl.Segments {
		if s.Gap {
			continue
		}
		seg := fileName(s.URI)
		if oldest == "" {
			oldest = seg
		}
		li := rt.listed[seg]
		if li == nil {
			li = &listedSegInfo{}
			rt.listed[seg] = li
		}
		li.dur, li.seen = s.Duration, true
		li.longest = max(li.longest, total)
	}
	if oldest == "" {
		return
	}
	rt.mu.Lock()
	have := rt.kept[oldest] != nil
	rt.mu.Unlock()
	if have {
		return
	}
	data, hdr, err := rt.fetch(oldest)
	if err != nil {
		return
	}
	rt.mu.Lock()
	rt.kept[oldest] = &keptSegment{data: data, hdr: hdr}
	rt.mu.Unlock()
}

// fetch asks gohlslib for one of its files.
func (rt *retainer) fetch(name string) ([]byte, http.Header, error) {
	cw := &captureWriter{h: http.Header{}, limit: rt.limit}
	rt.mux.Handle(cw, &http.Request{Method: http.MethodGet, URL: &url.URL{Path: name}, Header: http.Header{}})
	if cw.status != http.StatusOK || cw.overflow {
		return nil, nil, errors.New("not served")
	}
	return cw.buf.Bytes(), cw.h, nil
}

// get returns a removed segment still within its RFC period.
func (rt *retainer) get(name string, now time.Time) (*keptSegment, bool) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	k := rt.kept[name]
	if k == nil || (!k.until.IsZero() && now.After(k.until)) {
		return nil, false
	}
	return k, true
}

// serveFile answers a segment, init file or LL-HLS part: from gohlslib while it has it,
// else from the retainer, honouring byte ranges either way (206, or 416 with Content-Range
// "bytes */size"; Accept-Ranges: bytes). Without a Range header gohlslib's answer streams
// through; with one, the file is read into memory first (gohlslib ignores Range).
func (mx *hlsMuxer) serveFile(w *countingWriter, r *http.Request) {
	if r.Header.Get("Range") == "" {
		w.Header().Set("Accept-Ranges", "bytes")
		mx.mux.Handle(w, r)
		if w.wrote {
			return
		}
		w.Header().Del("Accept-Ranges")
	} else {
		cw := &captureWriter{h: http.Header{}, limit: mx.keep.limit}
		mx.mux.Handle(cw, r)
		switch {
		case cw.overflow:
			w.WriteHeader(http.StatusInternalServerError)
			return
		case cw.status == http.StatusOK:
			serveBytes(w, r, cw.buf.Bytes(), cw.h)
			return
		case cw.status != 0: // gohlslib's own error (muxer closing)
			w.WriteHeader(cw.status)
			return
		}
	}
	if k, ok := mx.keep.get(fileName(r.URL.Path), time.Now()); ok {
		serveBytes(w, r, k.data, k.hdr)
	}
	// else nothing written: the caller answers 404
}

// serveBytes answers one in-memory file with gohlslib's headers, ranges included.
func serveBytes(w http.ResponseWriter, r *http.Request, data []byte, hdr http.Header) {
	for _, k := range []string{"Content-Type", "Cache-Control"} {
		if v := hdr.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

func (rt *retainer) count() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return len(rt.kept)
}

// fileName is the file name of a playlist URI (gohlslib's are relative, maybe with a query).
func fileName(uri string) string {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	return path.Base(uri)
}

// captureLimit bounds one captured gohlslib answer: SegmentMaxBytes caps the media in a
// segment, to which MPEG-TS and fMP4 add their overhead (far less than the media itself).
func captureLimit(segmentMaxBytes uint64) int {
	return int(min(2*segmentMaxBytes+1<<20, 1<<31))
}

// captureWriter collects one gohlslib answer in memory.
type captureWriter struct {
	h        http.Header
	status   int
	buf      bytes.Buffer
	limit    int
	overflow bool
}

func (c *captureWriter) Header() http.Header { return c.h }

func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

func (c *captureWriter) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	if c.buf.Len()+len(b) > c.limit {
		c.overflow = true
		return 0, errors.New("answer too big")
	}
	return c.buf.Write(b)
}
