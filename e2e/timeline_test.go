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

// TestTimelineAcrossCopies (issue 9, interchangeable copies): ffmpeg publishes live/tl to
// owner A (RTMP, a key frame every 2 s, hls.segment_duration 1 s so every key frame cuts a
// segment); a viewer asks relay B directly for live/tl, so B pulls it from A over RTSP (cluster
// pull-through). B's segments carry A's clock: every segment B lists is also listed by A
// with the same EXT-X-PROGRAM-DATE-TIME (within 50 ms) and the same EXTINF, so a player
// moving between the copies lands on the same frame. (A relay inventing its own clock, as
// before, is off by the age of the key frame it started from plus the pull's latency.)
func TestTimelineAcrossCopies(t *testing.T) {
	t.Parallel()
	mediatest.Tool(t, "ffmpeg")
	rs := redistest.Standalone(t)
	a := startMediaOrigin(t, "tl-owner", rs.URL(), "", "PEERGATE_HLS_SEGMENT_DURATION=1s")
	b := startMediaOrigin(t, "tl-relay", rs.URL(), "", "PEERGATE_HLS_SEGMENT_DURATION=1s")
	gw := startGateway(t, "gw", rs.URL())
	waitReady(t, gw)
	pub := mediatest.PublishRTMP(t, "rtmp://"+a.rtmp+"/live/tl", mediatest.Source{GOP: 50})
	mediatest.EventuallyT(t, 30*time.Second, func() bool {
		m, _ := streamOrigins(gw, "live/tl")
		return m["tl-owner"] == "running"
	}, "live/tl never ran on tl-owner; publisher said: %s", pub.Output())

	c := &http.Client{Timeout: 20 * time.Second}
	// A first request at B starts the relay pull and waits for B's first segment.
	var lastErr error
	if !mediatest.Eventually(60*time.Second, func() bool {
		_, segs, err := mediaPlaylist(c, b.publicHTTP+"/live/tl")
		lastErr = err
		return err == nil && len(segs) >= 3
	}) {
		t.Fatalf("relay B never listed 3 segments: %v", lastErr)
	}
	if recs := logRecords(b.p, "on-demand pull running"); len(recs) != 1 || recs[0]["relay_from"] != "tl-owner" {
		t.Fatalf("relay B pulls %v, want one pull from tl-owner", recs)
	}

	// Both playlists, fetched together, a few times over (segments come and go): every segment
	// of B within A's window is one of A's, same PROGRAM-DATE-TIME and same EXTINF. The first
	// segment of any muxer is the exception for EXTINF: gohlslib's DTS extractor gives the
	// first key frame DTS = PTS and later ones DTS = PTS - the B-frame delay, so a muxer's first
	// segment is that delay (one frame here) shorter; its PROGRAM-DATE-TIME still matches.
	const tol = 50 * time.Millisecond
	matched := map[time.Time]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for len(matched) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d segments of B matched A's in 60 s", len(matched))
		}
		seqA, segsA, errA := mediaPlaylist(c, a.publicHTTP+"/live/tl")
		seqB, segsB, errB := mediaPlaylist(c, b.publicHTTP+"/live/tl")
		if errA != nil || errB != nil || len(segsA) == 0 {
			t.Logf("playlists: %v %v", errA, errB)
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
				t.Fatalf("B segment #%d at %s is in A's window (A seq %d, B seq %d) but A has no segment at that time:\nA %+v\nB %+v",
					sb.seq, sb.pdt.Format(time.RFC3339Nano), seqA, seqB, segsA, segsB)
			}
			if d := m.dur - sb.dur; sb.seq > 0 && (d < -time.Millisecond || d > time.Millisecond) {
				t.Fatalf("B segment #%d at %s lasts %v, A's #%d %v", sb.seq, sb.pdt.Format(time.RFC3339Nano), sb.dur, m.seq, m.dur)
			}
			if !matched[m.pdt] {
				t.Logf("B #%d %s %v = A #%d %s %v", sb.seq, sb.pdt.Format(time.RFC3339Nano), sb.dur,
					m.seq, m.pdt.Format(time.RFC3339Nano), m.dur)
			}
			matched[m.pdt] = true
		}
		time.Sleep(time.Second)
	}
}
