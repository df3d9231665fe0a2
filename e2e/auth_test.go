package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/shared/pubauth"
)

const publishSecret = "e2e-publish-secret-0123456789"

// TestPublishAuthThroughBinaries: with auth.publish_secret set on the gateway and the
// origin, ffmpeg without a key or with an expired key is refused on RTMP and RTSP, at the
// gateway (which logs the refusals itself) and directly at the origin, and nothing goes
// live; with the right key, RTMP and
// RTSP publishers through the gateway go live on the origin.
func TestPublishAuthThroughBinaries(t *testing.T) {
	t.Parallel()
	mediatest.Tool(t, "ffmpeg")
	rs := redistest.Standalone(t)
	secret := "PEERGATE_AUTH_PUBLISH_SECRET=" + publishSecret
	o := startMediaOrigin(t, "auth-1", rs.URL(), "", secret)
	gw := startGatewayOn(t, "gw-auth", rs.URL(),
		secret,
	)

	expired := pubauth.Query(publishSecret, "live/x", time.Now().Add(-time.Hour).Unix())
	refused := []struct{ desc, url, transport string }{
		{"gateway rtmp no key", "rtmp://" + gw.addr("rtmp") + "/live/x", ""},
		{"gateway rtmp expired", "rtmp://" + gw.addr("rtmp") + "/live/x?" + expired, ""},
		{"gateway rtsp no key", "rtsp://" + gw.addr("rtsp") + "/live/x", "tcp"},
		{"gateway rtsp expired", "rtsp://" + gw.addr("rtsp") + "/live/x?" + expired, "tcp"},
		{"origin rtmp no key", "rtmp://" + o.rtmp + "/live/x", ""},
		{"origin rtsp wrong key", "rtsp://" + o.rtsp + "/live/x?" + pubauth.Query("another-secret-0123456", "live/x", 0), "tcp"},
	}
	for _, c := range refused {
		var p *mediatest.Proc
		if c.transport == "" {
			p = mediatest.PublishRTMP(t, c.url, mediatest.Source{Size: "320x240"})
		} else {
			p = mediatest.PublishRTSP(t, c.url, c.transport, mediatest.Source{Size: "320x240"})
		}
		err, done := p.Wait(30 * time.Second)
		if !done {
			p.Stop()
			t.Errorf("%s: ffmpeg still publishing after 30s", c.desc)
			continue
		}
		if err == nil {
			t.Errorf("%s: ffmpeg exited cleanly, want a refusal: %s", c.desc, p.Output())
		}
	}
	// The gateway itself refused its four (the origin would refuse them too).
	lines, _ := gw.logLines(0)
	n := 0
	for _, l := range lines {
		if strings.Contains(l, `"outcome":"unauthorized"`) {
			n++
		}
	}
	if n != 4 {
		t.Errorf("gateway logged %d unauthorized outcomes, want 4", n)
	}
	if got, _ := streamOrigins(gw, "live/x"); len(got) != 0 {
		t.Fatalf("refused publishers made live/x visible: %v", got)
	}

	for i, c := range []struct{ proto, url string }{
		{"rtmp", "rtmp://" + gw.addr("rtmp") + "/live/ok1?" + pubauth.Query(publishSecret, "live/ok1", 0)},
		{"rtsp", "rtsp://" + gw.addr("rtsp") + "/live/ok2?" + pubauth.Query(publishSecret, "live/ok2", time.Now().Add(time.Hour).Unix())},
	} {
		name := fmt.Sprintf("live/ok%d", i+1)
		var p *mediatest.Proc
		if c.proto == "rtmp" {
			p = mediatest.PublishRTMP(t, c.url, mediatest.Source{Size: "320x240"})
		} else {
			p = mediatest.PublishRTSP(t, c.url, "tcp", mediatest.Source{Size: "320x240"})
		}
		var last map[string]string
		if !mediatest.Eventually(30*time.Second, func() bool {
			last, _ = streamOrigins(gw, name)
			return last[o.id] == "running"
		}) {
			t.Errorf("%s with the right key: gateway lists %v; ffmpeg said: %s", name, last, p.Output())
		}
		p.Stop()
	}
}
