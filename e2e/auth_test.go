package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/shared/pubauth"
)

const publishSecret = "e2e-publish-secret-0123456789"

// TestPublishAuthThroughBinaries: with auth.publish_secret set on the gateway and the
// origin, ffmpeg without a key, with a wrong key, another NAME's key or an expired key is
// refused on RTMP and RTSP, at the gateway (which logs the refusals itself) and directly at
// the origin, and nothing goes live; with the right key, RTMP and RTSP publishers through
// the gateway and straight to the origin go live. The origin binary's admin stream API
// refuses PUT and DELETE without the bearer token (401) and where none is configured (403).
func TestPublishAuthThroughBinaries(t *testing.T) {
	t.Parallel()
	mediatest.Tool(t, "ffmpeg")
	rs := redistest.Standalone(t)
	secret := "PEERGATE_AUTH_PUBLISH_SECRET=" + publishSecret
	o := startMediaOrigin(t, "auth-1", rs.URL(), "", secret, "PEERGATE_ADMIN_TOKEN="+adminToken)
	// No admin.token: changes disabled. Another cluster key keeps it out of the gateway's choices.
	bare := startMediaOrigin(t, "auth-2", rs.URL(), "", "PEERGATE_CLUSTER_KEY="+wrongKey)

	// The admin stream API changes nothing without the bearer token.
	for _, c := range []struct {
		desc, method, admin, auth string
		want                      int
	}{
		{"PUT without a token", http.MethodPut, o.p.addr("admin"), "", http.StatusUnauthorized},
		{"PUT with a wrong token", http.MethodPut, o.p.addr("admin"), "Bearer not-the-token-0123456789", http.StatusUnauthorized},
		{"DELETE without a token", http.MethodDelete, o.p.addr("admin"), "", http.StatusUnauthorized},
		{"PUT where no token is configured", http.MethodPut, bare.p.addr("admin"), "Bearer " + adminToken, http.StatusForbidden},
		{"DELETE where no token is configured", http.MethodDelete, bare.p.addr("admin"), "", http.StatusForbidden},
	} {
		req, _ := http.NewRequest(c.method, "http://"+c.admin+"/api/v1/streams/live/claimed", strings.NewReader(`{"state":"running"}`))
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("%s: %s, want %d", c.desc, res.Status, c.want)
		}
	}
	gw := startGatewayOn(t, "gw-auth", rs.URL(),
		secret,
	)

	if got, _ := streamOrigins(gw, "live/claimed"); len(got) != 0 {
		t.Errorf("refused admin calls announced live/claimed: %v", got)
	}

	// Every door (gateway relay, origin) of both protocols refuses every bad key.
	type attempt struct{ desc, url, transport string }
	var refused []attempt
	doors := []struct{ name, rtmp, rtsp string }{{"gateway", gw.addr("rtmp"), gw.addr("rtsp")}, {"origin", o.rtmp, o.rtsp}}
	keys := []struct{ name, query string }{
		{"no key", ""},
		{"wrong key", "?" + pubauth.Query("another-secret-0123456", "live/x", 0)},
		{"other name's key", "?" + pubauth.Query(publishSecret, "live/y", 0)},
		{"expired key", "?" + pubauth.Query(publishSecret, "live/x", time.Now().Add(-time.Hour).Unix())},
	}
	for _, d := range doors {
		for _, k := range keys {
			refused = append(refused,
				attempt{d.name + " rtmp " + k.name, "rtmp://" + d.rtmp + "/live/x" + k.query, ""},
				attempt{d.name + " rtsp " + k.name, "rtsp://" + d.rtsp + "/live/x" + k.query, "tcp"})
		}
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
	// The gateway itself refused its own (the origin would refuse them too).
	lines, _ := gw.logLines(0)
	n := 0
	for _, l := range lines {
		if strings.Contains(l, `"outcome":"unauthorized"`) {
			n++
		}
	}
	if want := 2 * len(keys); n != want {
		t.Errorf("gateway logged %d unauthorized outcomes, want %d", n, want)
	}
	if got, _ := streamOrigins(gw, "live/x"); len(got) != 0 {
		t.Fatalf("refused publishers made live/x visible: %v", got)
	}

	for i, c := range []struct{ proto, url string }{
		{"rtmp", "rtmp://" + gw.addr("rtmp") + "/live/ok1?" + pubauth.Query(publishSecret, "live/ok1", 0)},
		{"rtsp", "rtsp://" + gw.addr("rtsp") + "/live/ok2?" + pubauth.Query(publishSecret, "live/ok2", time.Now().Add(time.Hour).Unix())},
		{"rtmp", "rtmp://" + o.rtmp + "/live/ok3?" + pubauth.Query(publishSecret, "live/ok3", time.Now().Add(time.Hour).Unix())},
		{"rtsp", "rtsp://" + o.rtsp + "/live/ok4?" + pubauth.Query(publishSecret, "live/ok4", 0)},
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
