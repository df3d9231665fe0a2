package httpsrv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
)

// hlsMediaPlaylists reads index.m3u8 and returns the media playlist URLs it names.
func hlsMediaPlaylists(t testing.TB, base string) []string {
	t.Helper()
	code, _, body := get(t, base+"/index.m3u8", nil)
	if code != http.StatusOK {
		t.Fatalf("index.m3u8: %d", code)
	}
	pl, err := playlist.Unmarshal([]byte(body))
	if err != nil {
		t.Fatalf("index.m3u8: %v\n%s", err, body)
	}
	mv, ok := pl.(*playlist.Multivariant)
	if !ok {
		t.Fatalf("index.m3u8 is not a multivariant playlist:\n%s", body)
	}
	var out []string
	for _, v := range mv.Variants {
		out = append(out, base+"/"+v.URI)
	}
	for _, r := range mv.Renditions {
		if r.URI != nil {
			out = append(out, base+"/"+*r.URI)
		}
	}
	return out
}

type listedSegment struct {
	url string
	dur time.Duration
}

// mediaSegments fetches a media playlist and returns its (non-gap) segments, oldest first,
// and the playlist's total duration.
func mediaSegments(c *http.Client, url string) ([]listedSegment, time.Duration, error) {
	res, err := c.Get(url)
	if err != nil {
		return nil, 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil || res.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("playlist %s: %d %v", url, res.StatusCode, err)
	}
	pl, err := playlist.Unmarshal(b)
	if err != nil {
		return nil, 0, err
	}
	m, ok := pl.(*playlist.Media)
	if !ok {
		return nil, 0, fmt.Errorf("%s is not a media playlist", url)
	}
	var out []listedSegment
	var total time.Duration
	for _, s := range m.Segments {
		total += s.Duration
		if s.Gap {
			continue
		}
		out = append(out, listedSegment{url: url[:strings.LastIndexByte(url, '/')+1] + s.URI, dur: s.Duration})
	}
	return out, total, nil
}

// TestHLSRemovedSegmentsStayAvailable: RFC 8216 section 6.2.2. A live ffmpeg source (H.264 +
// AAC, 1 s segments, 7 per playlist) is polled over every HLS variant for 30 s (the playlist
// turns over four times): every 0.5 s
// a client fetches each media playlist and then, after a lag of up to 3/8 of what the RFC
// allows (the oldest segment's duration plus the playlist's duration), every segment the
// playlist listed, oldest first. Not one fetch may miss. Before segments were retained
// beyond the playlist window, the oldest segment was gone within a second of the playlist
// (and sometimes before a client with no lag at all asked for it).
const (
	retainWindow = 30 * time.Second
	retainTick   = 500 * time.Millisecond
)

func TestHLSRemovedSegmentsStayAvailable(t *testing.T) {
	mediatest.Tool(t, "ffmpeg")
	e := newEnv(t, media.Config{})
	variants := []string{VariantMPEGTS, VariantFMP4, VariantLowLatency}
	servers := map[string]*Server{}
	for _, v := range variants {
		servers[v] = e.startHTTP(func(s *Server) { s.HLS.Variant = v })
	}
	e.publishFFmpeg("live/keep", mediatest.Source{})

	// The variants are polled at the same time (parallel subtests would queue on -parallel).
	results := make([]pollResult, len(variants))
	var wg sync.WaitGroup
	for i, v := range variants {
		playlists := hlsMediaPlaylists(t, baseURL(servers[v])+"/live/keep")
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = pollSegments(playlists, retainWindow, retainTick)
		}()
	}
	wg.Wait()
	for i, v := range variants {
		r := results[i]
		t.Logf("%s: %d playlist polls, %d segment fetches, %d misses, %d playlist errors", v, r.polls, r.fetches, r.misses, r.errs)
		for _, l := range r.log {
			t.Logf("%s: %s", v, l)
		}
		if r.misses != 0 || r.errs != 0 {
			t.Errorf("%s: %d of %d segment fetches missed, %d playlist errors", v, r.misses, r.fetches, r.errs)
		}
		// window/tick ticks over each media playlist; allow half for a loaded machine, not for idleness.
		minPolls := int64(retainWindow/retainTick) / 2
		if r.polls < minPolls*int64(r.playlists) || r.fetches < 3*r.polls {
			t.Errorf("%s: %d polls and %d fetches: want %d polls per playlist of 3 segments or more", v, r.polls, r.fetches, minPolls)
		}
	}
}

type pollResult struct {
	playlists                    int
	polls, fetches, misses, errs int64
	log                          []string // the first misses
}

// pollSegments is the polling client of TestHLSRemovedSegmentsStayAvailable: every tick
// over window it polls the media playlists and their segments; a miss is a segment that
// does not answer 200 with a body.
func pollSegments(playlists []string, window, every time.Duration) pollResult {
	c := &http.Client{Timeout: 15 * time.Second}
	var polls, fetches, misses, errs atomic.Int64
	var mu sync.Mutex
	var missLog []string
	note := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(missLog) < 10 {
			missLog = append(missLog, fmt.Sprintf(format, a...))
		}
	}
	sem := make(chan struct{}, 16) // polls in flight
	var wg sync.WaitGroup
	tick := time.NewTicker(every)
	defer tick.Stop()
	end := time.Now().Add(window)
	for i := 0; time.Now().Before(end); i++ {
		select {
		case sem <- struct{}{}:
		case <-time.After(30 * time.Second):
			note("polls stuck")
			errs.Add(1)
			wg.Wait() // bounded: every request has a client timeout
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for _, pu := range playlists {
				segs, total, err := mediaSegments(c, pu)
				if err != nil || len(segs) == 0 {
					errs.Add(1)
					note("poll %d: %s: %d segments, %v", i, pu, len(segs), err)
					continue
				}
				polls.Add(1)
				// The RFC lets a client fetch a listed segment until the segment's duration plus
				// the playlist's duration after its removal, which comes after this fetch.
				allowed := segs[0].dur + total
				lag := time.Duration(i%4) * allowed / 8
				time.Sleep(lag)
				for _, sg := range segs {
					fetches.Add(1)
					res, err := c.Get(sg.url)
					if err != nil {
						misses.Add(1)
						note("poll %d: %s after %v: %v", i, path.Base(sg.url), lag, err)
						continue
					}
					n, _ := io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusOK || n == 0 {
						misses.Add(1)
						note("poll %d: %s after %v (allowed %v): %d, %d bytes", i, path.Base(sg.url), lag, allowed, res.StatusCode, n)
					}
				}
			}
		}()
		<-tick.C // a Ticker keeps ticking: this wait is bounded by every
	}
	wg.Wait()
	return pollResult{
		playlists: len(playlists),
		polls:     polls.Load(), fetches: fetches.Load(), misses: misses.Load(), errs: errs.Load(),
		log: missLog,
	}
}

// fetchRange GETs url with a Range header ("" for none) and returns status, headers, body.
func fetchRange(t testing.TB, url, rng string) (int, http.Header, []byte) {
	t.Helper()
	hdr := map[string]string{}
	if rng != "" {
		hdr["Range"] = rng
	}
	code, h, body := get(t, url, hdr)
	return code, h, []byte(body)
}

// checkRanges asks for byte ranges of a segment whose whole body is full.
func checkRanges(t *testing.T, url string, full []byte) {
	t.Helper()
	n := len(full)
	cases := []struct {
		rng        string
		code       int
		from, to   int // the slice of full expected, to exclusive
		contentRng string
	}{
		{"bytes=100-299", 206, 100, 300, fmt.Sprintf("bytes 100-299/%d", n)},
		{"bytes=0-", 206, 0, n, fmt.Sprintf("bytes 0-%d/%d", n-1, n)},
		{"bytes=-50", 206, n - 50, n, fmt.Sprintf("bytes %d-%d/%d", n-50, n-1, n)},
		{fmt.Sprintf("bytes=%d-%d", n-10, n+1000), 206, n - 10, n, fmt.Sprintf("bytes %d-%d/%d", n-10, n-1, n)},
		{fmt.Sprintf("bytes=%d-", n), 416, 0, 0, fmt.Sprintf("bytes */%d", n)},
	}
	for _, c := range cases {
		code, h, body := fetchRange(t, url, c.rng)
		if code != c.code || h.Get("Content-Range") != c.contentRng {
			t.Errorf("%s Range %s: %d Content-Range %q, want %d %q", path.Base(url), c.rng, code, h.Get("Content-Range"), c.code, c.contentRng)
			continue
		}
		if code == 206 && !bytes.Equal(body, full[c.from:c.to]) {
			t.Errorf("%s Range %s: %d bytes differ from bytes %d-%d of the segment", path.Base(url), c.rng, len(body), c.from, c.to-1)
		}
	}
}

// TestHLSSegmentRanges: a segment says Accept-Ranges: bytes and answers a Range with 206, the
// right Content-Range and exactly those bytes of the whole segment (416 with "bytes */size"
// when unsatisfiable), both while gohlslib lists it and after, from the retained copy; the
// live /NAME/mpegts body says Accept-Ranges: none and ignores Range.
func TestHLSSegmentRanges(t *testing.T) {
	e := newEnv(t, media.Config{})
	servers := map[string]*Server{}
	for _, v := range []string{VariantMPEGTS, VariantFMP4} {
		servers[v] = e.startHTTP(func(s *Server) { s.HLS.Variant = v; s.HLS.SegmentCount = 3 })
	}
	e.synth("live/r", 25, 25, 1000)
	c := &http.Client{Timeout: 15 * time.Second}
	for v, s := range servers {
		t.Run(v, func(t *testing.T) {
			pu := hlsMediaPlaylists(t, baseURL(s)+"/live/r")[0]
			segs, _, err := mediaSegments(c, pu)
			if err != nil || len(segs) == 0 {
				t.Fatalf("%s: %v %v", pu, segs, err)
			}
			// The oldest listed segment: ranges now, and again once gohlslib dropped it.
			url := segs[0].url
			code, h, full := fetchRange(t, url, "")
			if code != 200 || h.Get("Accept-Ranges") != "bytes" || len(full) < 1000 {
				t.Fatalf("%s: %d Accept-Ranges %q, %d bytes", path.Base(url), code, h.Get("Accept-Ranges"), len(full))
			}
			checkRanges(t, url, full)
			gone := mediatest.Eventually(15*time.Second, func() bool {
				segs, _, err := mediaSegments(c, pu)
				if err != nil {
					return false
				}
				for _, sg := range segs {
					if sg.url == url {
						return false
					}
				}
				return true
			})
			if !gone {
				t.Fatalf("%s still listed after 15 s", path.Base(url))
			}
			code, h, again := fetchRange(t, url, "")
			if code != 200 || h.Get("Accept-Ranges") != "bytes" || !bytes.Equal(again, full) {
				t.Fatalf("removed %s: %d Accept-Ranges %q, %d bytes, want the same %d bytes", path.Base(url), code, h.Get("Accept-Ranges"), len(again), len(full))
			}
			checkRanges(t, url, full)
			// An init file (fMP4) serves ranges too.
			if v == VariantFMP4 {
				_, _, b := get(t, pu, nil)
				var m playlist.Media
				if err := m.Unmarshal([]byte(b)); err != nil || m.Map == nil {
					t.Fatalf("fmp4 playlist without init: %v", err)
				}
				iu := pu[:strings.LastIndexByte(pu, '/')+1] + m.Map.URI
				code, _, init := fetchRange(t, iu, "")
				if code != 200 || len(init) < 200 {
					t.Fatalf("init: %d, %d bytes", code, len(init))
				}
				code, h, part := fetchRange(t, iu, "bytes=8-15")
				if code != 206 || h.Get("Content-Range") != fmt.Sprintf("bytes 8-15/%d", len(init)) || !bytes.Equal(part, init[8:16]) {
					t.Fatalf("init range: %d %q", code, h.Get("Content-Range"))
				}
			}
		})
	}

	// HTTP MPEG-TS: a never-ending body, not seekable.
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		req, _ := http.NewRequestWithContext(ctx, method, baseURL(servers[VariantMPEGTS])+"/live/r/mpegts", nil)
		req.Header.Set("Range", "bytes=1000-1999")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		var first [188]byte
		n := 0
		if method == http.MethodGet {
			n, _ = io.ReadFull(res.Body, first[:])
		}
		res.Body.Close()
		cancel()
		if res.StatusCode != 200 || res.Header.Get("Accept-Ranges") != "none" || res.Header.Get("Content-Range") != "" {
			t.Fatalf("%s mpegts with Range: %d Accept-Ranges %q Content-Range %q, want 200 none and no range",
				method, res.StatusCode, res.Header.Get("Accept-Ranges"), res.Header.Get("Content-Range"))
		}
		if method == http.MethodGet && (n != 188 || first[0] != 0x47) {
			t.Fatalf("mpegts body does not start with a TS packet: %d bytes, % x", n, first[:4])
		}
	}
}

// TestHLSRetainedSegmentsExpire: a removed segment is served for at least its RFC period
// (its duration plus the longest playlist it was listed in), then 404; the retainer holds a
// bounded number of copies meanwhile.
func TestHLSRetainedSegmentsExpire(t *testing.T) {
	e := newEnv(t, media.Config{})
	s := e.startHTTP(func(s *Server) { s.HLS.SegmentCount = 3 })
	st, _ := e.synth("live/x", 25, 25, 1000)
	c := &http.Client{Timeout: 15 * time.Second}
	pu := hlsMediaPlaylists(t, baseURL(s)+"/live/x")[0]
	segs, longest, err := mediaSegments(c, pu)
	if err != nil || len(segs) == 0 {
		t.Fatalf("%s: %v %v", pu, segs, err)
	}
	first := segs[0]
	var removed time.Time
	if !mediatest.Eventually(15*time.Second, func() bool {
		segs, total, err := mediaSegments(c, pu)
		if err != nil || len(segs) == 0 {
			return false
		}
		if segs[0].url == first.url {
			longest = max(longest, total)
			return false
		}
		removed = time.Now()
		return true
	}) {
		t.Fatal("the first segment never left the playlist")
	}
	if code, _, _ := get(t, first.url, nil); code != 200 {
		t.Fatalf("just removed: %d", code)
	}
	period := first.dur + longest
	var expired time.Time
	// The retainer notices a removal at the next key frame (1 s here): 404 well within 3 periods.
	if !mediatest.Eventually(3*period+5*time.Second, func() bool {
		code, _, _ := get(t, first.url, nil)
		expired = time.Now()
		return code == 404
	}) {
		t.Fatalf("%s still served %v after its removal", path.Base(first.url), time.Since(removed))
	}
	served := expired.Sub(removed)
	t.Logf("%s (%v, longest playlist %v) served for %v after its removal", path.Base(first.url), first.dur, longest, served.Round(100*time.Millisecond))
	// removed is when this client saw the removal (up to one 20 ms poll and a fetch late).
	if served < period-500*time.Millisecond {
		t.Fatalf("expired %v after its removal, before its RFC period %v", served, period)
	}
	s.hls.mu.Lock()
	mx := s.hls.m[st.Name()]
	s.hls.mu.Unlock()
	if n := mx.keep.count(); n == 0 || n > mx.keep.max {
		t.Fatalf("retainer holds %d segments, want 1..%d", n, mx.keep.max)
	}
}
