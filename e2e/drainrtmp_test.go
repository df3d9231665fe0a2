package e2e

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/internal/rtmptest"
)

// TestDrainMovesRTMPPlayers (issue 9, drain that moves viewers): an origin serving two RTMP
// players of live/dr gets SIGTERM. The player that set Enhanced RTMP's reconnect bit in
// connect gets NetConnection.Connect.ReconnectRequest with a tcUrl on the gateway
// (drain_reconnect_url) and its own app; the other gets nothing. Both keep receiving media
// while the origin drains; the origin counts the request (metric and log) and exits once
// both have left, long before drain_timeout.
func TestDrainMovesRTMPPlayers(t *testing.T) {
	t.Parallel()
	mediatest.Tool(t, "ffmpeg")
	rs := redistest.Standalone(t)
	gw := startGateway(t, "gw", rs.URL())
	waitReady(t, gw)
	gwRTMP := "rtmp://" + gw.addr("rtmp")
	o := startMediaOrigin(t, "dr-origin", rs.URL(), "", "PEERGATE_DRAIN_TIMEOUT=60s", "PEERGATE_DRAIN_RECONNECT_URL="+gwRTMP)
	pub := mediatest.PublishRTMP(t, "rtmp://"+o.rtmp+"/live/dr", mediatest.Source{})
	mediatest.EventuallyT(t, 30*time.Second, func() bool {
		m, _ := streamOrigins(gw, "live/dr")
		return m["dr-origin"] == "running"
	}, "live/dr never ran; publisher said: %s", pub.Output())

	url := "rtmp://" + o.rtmp + "/live/dr"
	follows, err := rtmptest.Play(url, rtmptest.CapsExReconnect, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer follows.Close()
	plain, err := rtmptest.Play(url, 0, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()

	o.p.signal(syscall.SIGTERM)
	st, _, err := follows.Next(30 * time.Second)
	if err != nil || st.Code != "NetConnection.Connect.ReconnectRequest" || st.TCURL != gwRTMP+"/live" {
		t.Fatalf("reconnecting player got %+v, %v; want ReconnectRequest to %s/live", st, err, gwRTMP)
	}
	// Both are still served while the origin drains; only the first was asked to move.
	for name, p := range map[string]*rtmptest.Player{"reconnecting": follows, "plain": plain} {
		st, n, err := p.Next(3 * time.Second)
		if !drainIsTimeout(err) || n == 0 {
			t.Errorf("%s player while draining: status %+v, %d media messages, err %v; want media and no status", name, st, n, err)
		}
	}
	if metrics := drainScrape(t, "http://"+o.p.addr("admin")+"/metrics"); !strings.Contains(metrics, "peergate_origin_rtmp_reconnect_requests_total 1\n") {
		t.Errorf("metrics lack peergate_origin_rtmp_reconnect_requests_total 1:\n%s", drainGrep(metrics, "reconnect"))
	}
	if recs := logRecords(o.p, "rtmp players asked to reconnect"); len(recs) != 1 || recs[0]["players"] != float64(1) {
		t.Errorf("drain log %v, want one line with players 1", recs)
	}
	if recs := logRecords(o.p, "rtmp reconnect requested"); len(recs) != 1 || recs[0]["tc_url"] != gwRTMP+"/live" {
		t.Errorf("reconnect log %v, want one line with tc_url %s/live", recs, gwRTMP)
	}

	// The asked player moves; the origin waits for the other.
	follows.Close()
	if _, exited := o.p.wait(3 * time.Second); exited {
		t.Fatal("the origin exited while a player was still watching")
	}
	plain.Close()
	code, exited := o.p.wait(30 * time.Second)
	if !exited || code != 0 {
		t.Fatalf("origin after its last player left: exited=%v code=%d, want a clean exit before drain_timeout (60 s)", exited, code)
	}
}

func drainIsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func drainScrape(t *testing.T, u string) string {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	return string(b)
}

func drainGrep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
