package httpsrv

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
)

// playlistPDTs fetches NAME's first media playlist from s and returns its segments'
// EXT-X-PROGRAM-DATE-TIMEs.
func playlistPDTs(t *testing.T, s *Server, name string) []time.Time {
	t.Helper()
	get := func(u string) string {
		res, err := http.Get(u)
		if err != nil {
			return ""
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			return ""
		}
		return string(b)
	}
	base := baseURL(s) + "/" + name + "/"
	var media string
	for _, l := range strings.Split(get(base+"index.m3u8"), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			media = l
			break
		}
	}
	if media == "" {
		return nil
	}
	var out []time.Time
	for _, l := range strings.Split(get(base+media), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "#EXT-X-PROGRAM-DATE-TIME:"); ok {
			ts, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				t.Fatalf("bad PROGRAM-DATE-TIME %q", v)
			}
			out = append(out, ts)
		}
	}
	return out
}

// TestPlaylistClock: PROGRAM-DATE-TIME comes from the stream's clock, not from when a muxer
// started. The stream awaits its source's clock: units before the first NTP are skipped, so
// the first segment starts at the first key frame with the source's NTP. A muxer started
// seconds later (another server on the same table) lists the same segment times.
func TestPlaylistClock(t *testing.T) {
	e := newEnv(t, media.Config{})
	early := e.startHTTP(nil)
	st, err := e.tbl.Publish("live/clock", []*media.Track{{Format: &format.H264{
		PayloadTyp: 96, SPS: testSPS, PPS: testPPS, PacketizationMode: 1,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	st.AwaitSourceClock(time.Minute)
	src := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC) // far from any clock a muxer could invent
	const fps, gop, clockFrom = 25, 25, 30             // key frame every second; the clock arrives at unit 30
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
			u := media.Unit{Track: 0, PTS: d, DTS: d, AU: [][]byte{{typ | 0x60, 1, 2, 3}}}
			if i >= clockFrom {
				u.NTP = src.Add(d)
			}
			st.WriteUnit(u)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	defer func() { cancel(); wg.Wait(); st.Close() }()

	var first []time.Time
	mediatest.EventuallyT(t, 30*time.Second, func() bool {
		first = playlistPDTs(t, early, "live/clock")
		return len(first) >= 3
	}, "the early muxer never listed 3 segments")
	// Key frames are at whole seconds of PTS; the first with a clock is at 2 s (unit 50).
	if want := src.Add(2 * time.Second); !first[0].Equal(want) {
		t.Fatalf("first segment at %v, want %v (the first key frame on the source clock)", first[0], want)
	}
	late := e.startHTTP(nil) // its muxer starts on the first request, seconds into the stream
	var second []time.Time
	mediatest.EventuallyT(t, 30*time.Second, func() bool {
		second = playlistPDTs(t, late, "live/clock")
		return len(second) >= 2
	}, "the late muxer never listed 2 segments")
	now := playlistPDTs(t, early, "live/clock")
	known := map[time.Time]bool{}
	for _, p := range append(first, now...) {
		known[p] = true
	}
	for _, p := range second {
		if p.Sub(src)%time.Second != 0 || (!known[p] && p.Before(now[len(now)-1])) {
			t.Fatalf("late muxer lists a segment at %v; early lists %v then %v", p, first, now)
		}
	}
}
