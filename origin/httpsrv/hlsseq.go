package httpsrv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/peergate/peergate/shared/streamname"
)

// Media sequence numbers shared by every copy of a stream.
//
// gohlslib numbers a muxer's segments from its own start, so a relay copy that started later
// would number the segment the owner calls 41 as, say, 3. Every copy already cuts its
// segments at the same key frames when every key frame cuts (key-frame interval at least
// hls.segment_duration) and stamps them with the same PROGRAM-DATE-TIME (the source clock,
// see media.Stream). So a relay's muxer, once its second segment exists (referenceSegment
// says why not the first), asks its upstream origin which sequence number the upstream
// serves for a segment starting at that PROGRAM-DATE-TIME (GET HLSSeqPath?name=NAME&pdt=...), and from then on serves its
// playlists with that offset added (EXT-X-MEDIA-SEQUENCE, EXT-X-RENDITION-REPORT LAST-MSN)
// and takes it off the _HLS_msn of LL-HLS requests. The upstream answers with its own
// served numbers, so relays of relays agree too. Without an answer (not a relay, no upstream
// segment at that time, upstream unreachable within seqAlignTimeout) the offset stays 0.

// HLSSeqPath answers, for a stream and a PROGRAM-DATE-TIME, the media sequence number this
// origin serves for the segment starting then: GET HLSSeqPath?name=NAME&pdt=RFC3339 gives
// 200 and the number, 404 when no listed segment starts then (within seqPDTTolerance).
// No stream path can be it ("_peergate" is no stream segment FromHTTPPath accepts with that
// file name).
const HLSSeqPath = "/_peergate/hlsseq"

const (
	// seqAlignTimeout bounds a relay muxer's alignment from its first segment on (its second
	// segment, then the upstream's answer); playlist requests wait for it, within the
	// server's WriteTimeout; the muxer's segments meanwhile go on.
	seqAlignTimeout = 8 * time.Second
	// seqPDTTolerance: copies stamp the same frame with the same clock to the microsecond;
	// playlists carry milliseconds.
	seqPDTTolerance = 20 * time.Millisecond
)

// alignSequence sets mx.seqOffset and closes mx.seqReady; it runs once per muxer.
func (hm *hlsManager) alignSequence(mx *hlsMuxer, log *slog.Logger) {
	defer close(mx.seqReady)
	s := hm.s
	if s.SequenceUpstream == nil {
		return
	}
	base, ok := s.SequenceUpstream(mx.st.Name())
	if !ok {
		return
	}
	select {
	case <-mx.ready:
	case <-mx.done:
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, seqAlignTimeout)
	defer cancel()
	var msn int
	var pdt time.Time
	for ok := false; !ok; {
		if msn, pdt, ok = mx.referenceSegment(); !ok && !sleepCtx(ctx, 100*time.Millisecond) {
			log.Info("hls sequence not aligned", "reason", "no second segment in time")
			return
		}
	}
	var up int
	var err error
	for {
		up, err = upstreamSequence(ctx, base, mx.st.Name(), pdt)
		if !errors.Is(err, errSeqRetry) || !sleepCtx(ctx, 250*time.Millisecond) {
			break
		}
	}
	if err != nil {
		log.Info("hls sequence not aligned", "upstream", base, "pdt", pdt.Format(time.RFC3339Nano), "reason", err.Error())
		return
	}
	mx.seqOffset = up - msn
	log.Info("hls sequence aligned", "upstream", base, "pdt", pdt.Format(time.RFC3339Nano), "upstream_msn", up, "offset", mx.seqOffset)
}

// referenceSegment is the media sequence number and start time of the muxer's second
// segment, once it is listed (false before). Not the first: gohlslib's first segment starts
// at the first key frame's PTS (its DTS extractor learns B-frame reordering later), so it
// may end one key frame later than the upstream's segment starting there; from the second
// on, both cut by the same rule from the same key frame.
func (mx *hlsMuxer) referenceSegment() (int, time.Time, bool) {
	pl, err := mx.mediaPlaylist()
	if err != nil {
		return 0, time.Time{}, false
	}
	times := segmentTimes(pl)
	seen := 0
	for i, seg := range pl.Segments {
		if seg.Gap {
			continue
		}
		if seen++; seen == 2 && !times[i].IsZero() {
			return pl.MediaSequence + i, times[i], true
		}
	}
	return 0, time.Time{}, false
}

// segmentTimes is the start time of every segment of pl: its PROGRAM-DATE-TIME, or one
// derived from the nearest segment that has one and the durations between (gohlslib's fMP4
// playlists date their last two segments only). All zero when no segment is dated.
func segmentTimes(pl *playlist.Media) []time.Time {
	out := make([]time.Time, len(pl.Segments))
	k := -1
	for i, seg := range pl.Segments {
		if seg.DateTime != nil {
			out[i] = *seg.DateTime
			if k < 0 {
				k = i
			}
		}
	}
	if k < 0 {
		return out
	}
	for i := k - 1; i >= 0; i-- {
		out[i] = out[i+1].Add(-pl.Segments[i].Duration)
	}
	for i := k + 1; i < len(out); i++ {
		if out[i].IsZero() {
			out[i] = out[i-1].Add(pl.Segments[i-1].Duration)
		}
	}
	return out
}

// mediaPlaylist reads the muxer's first media playlist from gohlslib.
func (mx *hlsMuxer) mediaPlaylist() (*playlist.Media, error) {
	names := mx.keep.mediaPlaylists()
	if len(names) == 0 {
		return nil, errors.New("no media playlist")
	}
	b, _, err := mx.keep.fetch(names[0])
	if err != nil {
		return nil, err
	}
	var pl playlist.Media
	if err := pl.Unmarshal(b); err != nil {
		return nil, err
	}
	return &pl, nil
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

var errSeqRetry = errors.New("upstream not ready")

// upstreamSequence asks the origin at base which sequence number it serves for the segment
// of name starting at pdt.
func upstreamSequence(ctx context.Context, base, name string, pdt time.Time) (int, error) {
	q := url.Values{"name": {name}, "pdt": {pdt.UTC().Format(time.RFC3339Nano)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+HLSSeqPath+"?"+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "peergate-origin")
	res, err := seqClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64))
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusServiceUnavailable, http.StatusNotFound:
		// Not aligned itself yet, or that segment is not listed yet: ask again.
		return 0, fmt.Errorf("%w: %s", errSeqRetry, res.Status)
	default:
		return 0, fmt.Errorf("upstream answered %s", res.Status)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("upstream answered %q", b)
	}
	return n, nil
}

var seqClient = &http.Client{Timeout: 2 * time.Second}

// serveSeq answers HLSSeqPath for an upstream's relays. It starts no muxer and counts no viewer.
func (s *Server) serveSeq(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	name := r.URL.Query().Get("name")
	pdt, err := time.Parse(time.RFC3339Nano, r.URL.Query().Get("pdt"))
	if !streamname.Valid(name) || err != nil {
		http.Error(w, "want name and pdt", http.StatusBadRequest)
		return
	}
	mx := s.hls.get(name)
	if mx == nil || !isReady(mx) {
		http.Error(w, "no HLS muxer", http.StatusNotFound)
		return
	}
	select {
	case <-mx.seqReady:
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "sequence not aligned yet", http.StatusServiceUnavailable)
		return
	}
	pl, err := mx.mediaPlaylist()
	if err != nil {
		http.Error(w, "no media playlist", http.StatusNotFound)
		return
	}
	for i, start := range segmentTimes(pl) {
		if start.IsZero() || pl.Segments[i].Gap {
			continue
		}
		if d := start.Sub(pdt); d > -seqPDTTolerance && d < seqPDTTolerance {
			fmt.Fprintf(w, "%d\n", pl.MediaSequence+i+mx.seqOffset)
			return
		}
	}
	http.Error(w, "no segment starts then", http.StatusNotFound)
}

// shiftMSNQuery takes offset off an LL-HLS request's _HLS_msn (the client speaks served
// numbers, gohlslib its own); false when the result is no sequence number gohlslib has.
func shiftMSNQuery(u *url.URL, offset int) bool {
	q := u.Query()
	v := q.Get("_HLS_msn")
	if v == "" {
		return true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n-offset < 0 {
		return false
	}
	q.Set("_HLS_msn", strconv.Itoa(n-offset))
	u.RawQuery = q.Encode()
	return true
}

// shiftPlaylist adds offset to a media playlist's EXT-X-MEDIA-SEQUENCE and its rendition
// reports' LAST-MSN; every other byte stays.
func shiftPlaylist(b []byte, offset int) []byte {
	lines := strings.SplitAfter(string(b), "\n")
	for i, l := range lines {
		body := strings.TrimRight(l, "\r\n")
		end := l[len(body):]
		switch {
		case strings.HasPrefix(body, "#EXT-X-MEDIA-SEQUENCE:"):
			if n, err := strconv.Atoi(strings.TrimPrefix(body, "#EXT-X-MEDIA-SEQUENCE:")); err == nil {
				lines[i] = "#EXT-X-MEDIA-SEQUENCE:" + strconv.Itoa(n+offset) + end
			}
		case strings.HasPrefix(body, "#EXT-X-RENDITION-REPORT:"):
			lines[i] = shiftAttr(body, "LAST-MSN=", offset) + end
		}
	}
	return []byte(strings.Join(lines, ""))
}

// shiftAttr adds offset to the integer attribute key (e.g. "LAST-MSN=") of a tag line.
func shiftAttr(line, key string, offset int) string {
	i := strings.Index(line, key)
	if i < 0 || (i > 0 && line[i-1] != ':' && line[i-1] != ',') {
		return line
	}
	start := i + len(key)
	end := start
	for end < len(line) && line[end] >= '0' && line[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(line[start:end])
	if err != nil {
		return line
	}
	return line[:start] + strconv.Itoa(n+offset) + line[end:]
}

// serveShiftedPlaylist answers a media playlist with the muxer's sequence offset applied.
func (mx *hlsMuxer) serveShiftedPlaylist(w *countingWriter, r *http.Request) {
	u := *r.URL
	if !shiftMSNQuery(&u, mx.seqOffset) {
		http.Error(w, "bad _HLS_msn", http.StatusBadRequest)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL = &u
	cw := &captureWriter{h: http.Header{}, limit: 4 << 20}
	mx.mux.Handle(cw, r2)
	if cw.status == 0 {
		return // nothing answered: the caller's 404
	}
	if cw.overflow {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	for k, v := range cw.h {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	body := cw.buf.Bytes()
	if cw.status == http.StatusOK {
		body = shiftPlaylist(body, mx.seqOffset)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(cw.status)
	_, _ = w.Write(body)
}
