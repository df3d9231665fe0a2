package httpsrv

import (
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
// AAC, 1 s segments, 7 per playlist) is polled over every HLS variant for 60 s: every 0.5 s
// a client fetches each media playlist and then, after a lag of up to 3/8 of what the RFC
// allows (the oldest segment's duration plus the playlist's duration), every segment the
// playlist listed, oldest first. Not one fetch may miss. Before segments were retained
// beyond the playlist window, the oldest segment was gone within a second of the playlist
// (and sometimes before a client with no lag at all asked for it).
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
			results[i] = pollSegments(playlists, 60*time.Second, 500*time.Millisecond)
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
		// 120 ticks over each media playlist; allow for a loaded machine, not for idleness.
		if r.polls < 60*int64(r.playlists) || r.fetches < 3*r.polls {
			t.Errorf("%s: %d polls and %d fetches: want 60 polls per playlist of 3 segments or more", v, r.polls, r.fetches)
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
