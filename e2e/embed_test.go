package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/browsertest"
	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/redistest"
)

// TestEmbedThroughGateway: a browser opens embed.html at the gateway, follows its 302 to the
// origin and plays, once with Chromium's native HLS and once on the hls.js path (the hls.js
// the origin embeds); the page and its media come from the origin, and the video's clock
// advances on both paths.
func TestEmbedThroughGateway(t *testing.T) {
	t.Parallel()
	rs := redistest.Standalone(t)
	o := startMediaOrigin(t, "origin1", rs.URL(), "streams:\n  - name: demo\n    source: "+mediatest.Demo(t)+"\n",
		"PEERGATE_HEARTBEAT_INTERVAL=500ms", "PEERGATE_HEARTBEAT_TTL=10s")
	gw := startGatewayOn(t, "gateway", rs.URL(),
		"PEERGATE_LISTEN_RTSP=",
		"PEERGATE_LISTEN_RTMP=",
	)
	mediatest.EventuallyT(t, 20*time.Second, func() bool {
		got, _ := streamOrigins(gw, "demo")
		return got[o.id] == "running"
	}, "gateway never listed demo on %s", o.id)

	c := browsertest.Start(t)
	for _, tc := range []struct{ query, engine string }{{"", "native"}, {"?hlsjs=1", "hlsjs"}} {
		session := c.Open("http://" + gw.addr("http") + "/demo/embed.html" + tc.query)
		first, last := c.WatchEmbed(session, 45*time.Second)
		var href string
		c.Eval(session, "location.href", &href)
		t.Logf("%s: %s first %+v last %+v", tc.engine, href, first, last)
		if !strings.HasPrefix(href, o.publicHTTP+"/demo/embed.html") {
			t.Errorf("%s: page at %q, want it redirected to %s", tc.engine, href, o.publicHTTP)
		}
		if last.State != "playing" || last.Width != 640 || last.Time <= first.Time+1 || last.Engine != tc.engine {
			t.Errorf("%s: video did not play through the gateway: first %+v last %+v", tc.engine, first, last)
		}
	}
}
