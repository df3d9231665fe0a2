package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/redistest"
)

// hlsSegment is one media segment of a media playlist.
type hlsSegment struct {
	seq int           // media sequence number
	pdt time.Time     // EXT-X-PROGRAM-DATE-TIME
	dur time.Duration // EXTINF
}

// mediaPlaylist fetches base's multivariant playlist (index.m3u8) and its first media playlist.
func mediaPlaylist(c *http.Client, base string) (int, []hlsSegment, error) {
	body, err := httpText(c, base+"/index.m3u8")
	if err != nil {
		return 0, nil, err
	}
	var uri string
	for _, l := range strings.Split(body, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			uri = l
			break
		}
	}
	if uri == "" {
		return 0, nil, fmt.Errorf("no media playlist in %q", body)
	}
	ref, err := url.Parse(base + "/index.m3u8")
	if err != nil {
		return 0, nil, err
	}
	u, err := ref.Parse(uri)
	if err != nil {
		return 0, nil, err
	}
	body, err = httpText(c, u.String())
	if err != nil {
		return 0, nil, err
	}
	return parseMediaPlaylist(body)
}

func httpText(c *http.Client, u string) (string, error) {
	res, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %d %s", u, res.StatusCode, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// parseMediaPlaylist reads the media sequence and each segment's PROGRAM-DATE-TIME and EXTINF.
func parseMediaPlaylist(body string) (int, []hlsSegment, error) {
	var seq0 int
	var segs []hlsSegment
	var cur hlsSegment
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"):
			n, err := strconv.Atoi(strings.TrimPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"))
			if err != nil {
				return 0, nil, err
			}
			seq0 = n
		case strings.HasPrefix(l, "#EXT-X-PROGRAM-DATE-TIME:"):
			ts, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(l, "#EXT-X-PROGRAM-DATE-TIME:"))
			if err != nil {
				return 0, nil, err
			}
			cur.pdt = ts
		case strings.HasPrefix(l, "#EXTINF:"):
			v, _, _ := strings.Cut(strings.TrimPrefix(l, "#EXTINF:"), ",")
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, nil, err
			}
			cur.dur = time.Duration(f * float64(time.Second))
		case l != "" && !strings.HasPrefix(l, "#"):
			cur.seq = seq0 + len(segs)
			segs = append(segs, cur)
			cur = hlsSegment{}
		}
	}
	return seq0, segs, sc.Err()
}

// TestTimelineAcrossCopies (issue 9, interchangeable copies): two streams on owner A, each
// with a key frame every 2 s and hls.segment_duration 1 s, so every key frame cuts a segment:
// live/tl published over RTMP (no clock from the publisher: A anchors one) and live/tlsr
// published over RTSP by an ffmpeg whose RTCP sender reports carry a clock of its own
// (-start_time_realtime), far from any clock an origin could invent. A viewer asks
// relay B directly for each, so B pulls it from A over RTSP (cluster pull-through). B's
// segments carry A's clock and A's numbers: every segment B lists within A's window is one of
// A's, with the same EXT-X-PROGRAM-DATE-TIME (within 50 ms), the same media sequence number
// and the same EXTINF, so a player moving between the copies lands on the same frame. A
// relay inventing its own clock fails on live/tlsr (its publisher's clock is hours off).
func TestTimelineAcrossCopies(t *testing.T) {
	t.Parallel()
	mediatest.Tool(t, "ffmpeg")
	rs := redistest.Standalone(t)
	a := startMediaOrigin(t, "tl-owner", rs.URL(), "", "PEERGATE_HLS_SEGMENT_DURATION=1s")
	b := startMediaOrigin(t, "tl-relay", rs.URL(), "", "PEERGATE_HLS_SEGMENT_DURATION=1s")
	gw := startGateway(t, "gw", rs.URL())
	waitReady(t, gw)
	pubs := map[string]*mediatest.Proc{
		// A key frame every second, as long as a segment: every key frame cuts (just).
		"live/tl": mediatest.PublishRTMP(t, "rtmp://"+a.rtmp+"/live/tl", mediatest.Source{GOP: 25}),
		// Every 2 s.
		"live/tlsr": mediatest.Start(t, "ffmpeg", append(mediatest.SourceArgs(mediatest.Source{GOP: 50}),
			"-start_time_realtime", "1577836800000000", // 2020-01-01T00:00:00Z
			"-f", "rtsp", "-rtsp_transport", "tcp", "rtsp://"+a.rtsp+"/live/tlsr")...),
	}
	for _, name := range []string{"live/tl", "live/tlsr"} {
		mediatest.EventuallyT(t, 30*time.Second, func() bool {
			m, _ := streamOrigins(gw, name)
			return m["tl-owner"] == "running"
		}, "%s never ran on tl-owner; publisher said: %s", name, pubs[name].Output())
	}
	c := &http.Client{Timeout: 20 * time.Second}
	for _, name := range []string{"live/tl", "live/tlsr"} {
		checkCopies(t, c, a, b, name)
	}
	if recs := logRecords(b.p, "on-demand pull running"); len(recs) != 2 || recs[0]["relay_from"] != "tl-owner" || recs[1]["relay_from"] != "tl-owner" {
		t.Fatalf("relay B pulls %v, want one pull of each stream from tl-owner", recs)
	}
}

// checkCopies asks relay b for name (starting its pull from owner a) and compares the media
// playlists of both until four segments matched; any mismatch fails at once.
func checkCopies(t *testing.T, c *http.Client, a, b *mediaOrigin, name string) {
	t.Helper()
	var lastErr error
	if !mediatest.Eventually(60*time.Second, func() bool {
		_, segs, err := mediaPlaylist(c, b.publicHTTP+"/"+name)
		lastErr = err
		return err == nil && len(segs) >= 3
	}) {
		t.Fatalf("%s: relay B never listed 3 segments: %v", name, lastErr)
	}
	// Both playlists, fetched together, a few times over (segments come and go): every segment
	// of B within A's window is one of A's: same PROGRAM-DATE-TIME, same media sequence
	// number (B asked A for it, httpsrv.HLSSeqPath) and same EXTINF. B's first segment is the
	// exception for number and EXTINF: gohlslib's DTS extractor gives a muxer's first key
	// frame DTS = PTS and later ones DTS = PTS - the B-frame delay, so the first segment is
	// that delay shorter, and with key frames exactly a segment apart it runs on to the next
	// key frame (two of A's segments); its PROGRAM-DATE-TIME still matches.
	const tol = 50 * time.Millisecond
	_, firstB, err := mediaPlaylist(c, b.publicHTTP+"/"+name)
	if err != nil || len(firstB) == 0 {
		t.Fatalf("%s: B's playlist: %v", name, err)
	}
	segsB0 := firstB[0] // B's first segment, one B-frame delay shorter (below)
	matched := map[time.Time]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for len(matched) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: only %d segments of B matched A's in 60 s", name, len(matched))
		}
		seqA, segsA, errA := mediaPlaylist(c, a.publicHTTP+"/"+name)
		seqB, segsB, errB := mediaPlaylist(c, b.publicHTTP+"/"+name)
		if errA != nil || errB != nil || len(segsA) == 0 {
			t.Logf("%s playlists: %v %v", name, errA, errB)
			time.Sleep(time.Second)
			continue
		}
		for _, sb := range segsB {
			if sb.pdt.Before(segsA[0].pdt.Add(-tol)) || sb.pdt.After(segsA[len(segsA)-1].pdt.Add(tol)) {
				continue // outside A's window as fetched
			}
			var m *hlsSegment
			for i := range segsA {
				if d := segsA[i].pdt.Sub(sb.pdt); d > -tol && d < tol {
					m = &segsA[i]
				}
			}
			if m == nil {
				t.Fatalf("%s: B segment #%d at %s is in A's window (A seq %d, B seq %d) but A has no segment at that time:\nA %+v\nB %+v",
					name, sb.seq, sb.pdt.Format(time.RFC3339Nano), seqA, seqB, segsA, segsB)
			}
			first := sb.pdt.Equal(segsB0.pdt)
			if m.seq != sb.seq && !first {
				t.Fatalf("%s: B segment at %s is #%d, A's is #%d: the copies number it differently", name, sb.pdt.Format(time.RFC3339Nano), sb.seq, m.seq)
			}
			if d := m.dur - sb.dur; !first && (d < -time.Millisecond || d > time.Millisecond) {
				t.Fatalf("%s: B segment #%d at %s lasts %v, A's #%d %v", name, sb.seq, sb.pdt.Format(time.RFC3339Nano), sb.dur, m.seq, m.dur)
			}
			if !matched[m.pdt] {
				t.Logf("%s: B #%d %s %v = A #%d %s %v", name, sb.seq, sb.pdt.Format(time.RFC3339Nano), sb.dur,
					m.seq, m.pdt.Format(time.RFC3339Nano), m.dur)
			}
			matched[m.pdt] = true
		}
		time.Sleep(time.Second)
	}
}
