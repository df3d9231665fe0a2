package httpsrv

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/gortsplib/v5/pkg/format"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
)

var shiftCases = []struct {
	name   string
	in     string
	offset int
	want   string
}{
	{"media sequence", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2.00000,\nseg3.ts\n", 40, "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:43\n#EXTINF:2.00000,\nseg3.ts\n"},
	{"crlf kept", "#EXT-X-MEDIA-SEQUENCE:0\r\nx.ts\r\n", 7, "#EXT-X-MEDIA-SEQUENCE:7\r\nx.ts\r\n"},
	{"rendition report", "#EXT-X-MEDIA-SEQUENCE:9\n#EXT-X-RENDITION-REPORT:URI=\"a.m3u8\",LAST-MSN=12,LAST-PART=2\n", 5,
		"#EXT-X-MEDIA-SEQUENCE:14\n#EXT-X-RENDITION-REPORT:URI=\"a.m3u8\",LAST-MSN=17,LAST-PART=2\n"},
	{"other tags untouched", "#EXT-X-PART:DURATION=0.2,URI=\"p12.mp4\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p13.mp4\"\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n", 5,
		"#EXT-X-PART:DURATION=0.2,URI=\"p12.mp4\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p13.mp4\"\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n"},
	{"not a number", "#EXT-X-MEDIA-SEQUENCE:x\n", 5, "#EXT-X-MEDIA-SEQUENCE:x\n"},
	{"no final newline", "#EXT-X-MEDIA-SEQUENCE:1", 1, "#EXT-X-MEDIA-SEQUENCE:2"},
}

// TestShiftPlaylist: the offset goes on EXT-X-MEDIA-SEQUENCE and LAST-MSN only.
func TestShiftPlaylist(t *testing.T) {
	for _, c := range shiftCases {
		if got := string(shiftPlaylist([]byte(c.in), c.offset)); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

func FuzzShiftPlaylist(f *testing.F) {
	for _, c := range shiftCases {
		f.Add(c.in, c.offset)
	}
	f.Fuzz(func(t *testing.T, in string, offset int) {
		out := shiftPlaylist([]byte(in), offset)
		if offset == 0 && string(out) != in {
			t.Fatalf("offset 0 changed %q into %q", in, out)
		}
		if strings.Count(string(out), "\n") != strings.Count(in, "\n") {
			t.Fatalf("lines changed: %q into %q", in, out)
		}
	})
}

// TestShiftMSNQuery: an LL-HLS _HLS_msn is taken back to gohlslib's numbers; numbers below
// the offset and garbage are refused.
func TestShiftMSNQuery(t *testing.T) {
	for _, c := range []struct {
		q      string
		offset int
		want   string
		ok     bool
	}{
		{"_HLS_msn=50&_HLS_part=2", 40, "_HLS_msn=10&_HLS_part=2", true},
		{"", 40, "", true},
		{"_HLS_skip=YES", 40, "_HLS_skip=YES", true},
		{"_HLS_msn=3", 40, "", false},
		{"_HLS_msn=x", 40, "", false},
	} {
		u := &url.URL{Path: "main_stream.m3u8", RawQuery: c.q}
		ok := shiftMSNQuery(u, c.offset)
		if ok != c.ok || (ok && u.RawQuery != c.want) {
			t.Errorf("%q: got %q %v, want %q %v", c.q, u.RawQuery, ok, c.want, c.ok)
		}
	}
}

// TestSequenceAlignment: a relay's muxer (server B, SequenceUpstream pointing at A) started
// seconds after the owner's (server A) numbers every segment as A does, for every variant;
// A's sequence endpoint answers the number of a listed segment and refuses the rest.
func TestSequenceAlignment(t *testing.T) {
	for _, v := range []string{VariantMPEGTS, VariantLowLatency} {
		t.Run(v, func(t *testing.T) { testSequenceAlignment(t, v) })
	}
}

func testSequenceAlignment(t *testing.T, variant string) {
	cfg := func(s *Server) { s.HLS.Variant = variant; s.HLS.SegmentDuration = 500 * time.Millisecond }
	envA, envB := newEnv(t, media.Config{}), newEnv(t, media.Config{})
	a := envA.startHTTP(cfg)
	b := envB.startHTTP(func(s *Server) {
		cfg(s)
		s.SequenceUpstream = func(name string) (string, bool) { return baseURL(a), name == "live/seq" }
	})
	track := func() []*media.Track {
		return []*media.Track{{Format: &format.H264{PayloadTyp: 96, SPS: testSPS, PPS: testPPS, PacketizationMode: 1}}}
	}
	stA, err := envA.tbl.Publish("live/seq", track())
	if err != nil {
		t.Fatal(err)
	}
	src := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	const fps, gop, relayFrom = 25, 25, 80 // key frame every second; B joins at unit 80
	var stB *media.Stream
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second / fps)
		defer tick.Stop()
		for i := 0; ; i++ {
			typ := byte(1)
			if i%gop == 0 {
				typ = 5
			}
			d := time.Duration(i) * time.Second / fps
			u := media.Unit{Track: 0, PTS: d, DTS: d, NTP: src.Add(d), AU: [][]byte{{typ | 0x60, 1, 2, 3}}}
			stA.WriteUnit(u)
			if i == relayFrom {
				stB, err = envB.tbl.Publish("live/seq", track())
				if err != nil {
					panic(err)
				}
			}
			if stB != nil {
				stB.WriteUnit(u)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	defer func() {
		cancel()
		wg.Wait()
		stA.Close()
		if stB != nil {
			stB.Close()
		}
	}()

	type seg struct {
		msn int
		pdt time.Time
	}
	list := func(s *Server) []seg {
		pl := fetchMediaPlaylist(t, s, "live/seq")
		if pl == nil {
			return nil
		}
		// fMP4 playlists date their last two segments: earlier ones start that much earlier.
		var out []seg
		last := -1
		for i, sg := range pl.Segments {
			if sg.DateTime != nil {
				last = i
			}
		}
		if last < 0 {
			return nil
		}
		start := *pl.Segments[last].DateTime
		for i := last; i >= 0; i-- {
			if i < last {
				start = start.Add(-pl.Segments[i].Duration)
			}
			if !pl.Segments[i].Gap {
				out = append([]seg{{pl.MediaSequence + i, start.Round(time.Millisecond)}}, out...)
			}
		}
		return out
	}
	var segsB []seg
	mediatest.EventuallyT(t, 30*time.Second, func() bool {
		segsB = list(b)
		return len(segsB) >= 3
	}, "relay B never listed 3 segments")
	segsA := list(a)
	byPDT := map[time.Time]int{}
	for _, s := range segsA {
		byPDT[s.pdt] = s.msn
	}
	matched := 0
	for _, s := range segsB {
		msnA, ok := byPDT[s.pdt]
		if !ok {
			continue
		}
		matched++
		if msnA != s.msn {
			t.Fatalf("segment at %v: A #%d, B #%d\nA %v\nB %v", s.pdt, msnA, s.msn, segsA, segsB)
		}
	}
	if matched < 2 {
		t.Fatalf("only %d segments in both playlists\nA %v\nB %v", matched, segsA, segsB)
	}
	if segsB[0].msn < 3 {
		t.Fatalf("B's first segment is #%d: not numbered from A", segsB[0].msn)
	}

	// A's sequence endpoint.
	get := func(q string) (int, string) {
		res, err := http.Get(baseURL(a) + HLSSeqPath + "?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, strings.TrimSpace(string(body))
	}
	last := segsA[len(segsA)-1]
	q := url.Values{"name": {"live/seq"}, "pdt": {last.pdt.Format(time.RFC3339Nano)}}
	if code, body := get(q.Encode()); code != 200 || body != strconv.Itoa(last.msn) {
		t.Errorf("sequence of %v: %d %q, want 200 %d", last.pdt, code, body, last.msn)
	}
	q.Set("pdt", last.pdt.Add(300*time.Millisecond).Format(time.RFC3339Nano))
	if code, _ := get(q.Encode()); code != 404 {
		t.Errorf("sequence of a time no segment starts at: %d, want 404", code)
	}
	for _, bad := range []string{"name=live/seq&pdt=yesterday", "name=../x&pdt=" + url.QueryEscape(last.pdt.Format(time.RFC3339Nano)), ""} {
		if code, _ := get(bad); code != 400 {
			t.Errorf("query %q: %d, want 400", bad, code)
		}
	}
	q.Set("name", "live/none")
	if code, _ := get(q.Encode()); code != 404 {
		t.Errorf("unknown stream: %d, want 404", code)
	}
}

// fetchMediaPlaylist reads NAME's first media playlist from s, nil while there is none.
func fetchMediaPlaylist(t *testing.T, s *Server, name string) *playlist.Media {
	t.Helper()
	get := func(u string) []byte {
		res, err := (&http.Client{Timeout: 5 * time.Second}).Get(u)
		if err != nil {
			return nil
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return nil
		}
		b, _ := io.ReadAll(res.Body)
		return b
	}
	base := baseURL(s) + "/" + name + "/"
	var mv playlist.Multivariant
	if err := mv.Unmarshal(get(base + "index.m3u8")); err != nil || len(mv.Variants) == 0 {
		return nil
	}
	var pl playlist.Media
	if err := pl.Unmarshal(get(base + mv.Variants[0].URI)); err != nil {
		return nil
	}
	return &pl
}

// BenchmarkRelayPlaylist: what a relay's sequence offset costs a media playlist request:
// "plain" is gohlslib's answer as an owner serves it, "shifted" the same answer rewritten
// (_HLS_msn translation, capture, EXT-X-MEDIA-SEQUENCE rewrite), both in this run.
func BenchmarkRelayPlaylist(b *testing.B) {
	e := newEnv(b, media.Config{})
	s := e.startHTTP(func(s *Server) { s.HLS.SegmentDuration = 200 * time.Millisecond })
	e.synth("live/bench", 50, 10, 1000)
	var mx *hlsMuxer
	if !mediatest.Eventually(30*time.Second, func() bool {
		mx = s.hls.get("live/bench")
		return mx != nil && isReady(mx) && len(mx.keep.mediaPlaylists()) > 0
	}) {
		b.Fatal("no muxer")
	}
	<-mx.seqReady
	name := mx.keep.mediaPlaylists()[0]
	req := func() *http.Request {
		return &http.Request{Method: http.MethodGet, URL: &url.URL{Path: name}, Header: http.Header{}}
	}
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			mx.mux.Handle(&countingWriter{ResponseWriter: &captureWriter{h: http.Header{}, limit: 1 << 20}}, req())
		}
	})
	mx.seqOffset = 1000 // no request runs concurrently
	b.Run("shifted", func(b *testing.B) {
		for b.Loop() {
			mx.serveShiftedPlaylist(&countingWriter{ResponseWriter: &captureWriter{h: http.Header{}, limit: 1 << 20}}, req())
		}
	})
}
