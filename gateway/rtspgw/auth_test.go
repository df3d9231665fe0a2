package rtspgw

import (
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/peergate/peergate/internal/authtest"
	"github.com/peergate/peergate/shared/pubauth"
)

const authSecret = "publish-secret-0123456789"

// TestPublishAuthorization: ANNOUNCE without a key, with a wrong key or with an expired key
// gets 403 from the gateway and the origin never hears of it; the right key is relayed and
// its packets reach the origin.
func TestPublishAuthorization(t *testing.T) {
	origin, stopOrigin := newOrigin(t, nil)
	defer stopOrigin()
	gw := &Server{Address: "127.0.0.1:0", Resolver: fakeResolver{origin: origin.base()}, Metrics: &recMetrics{},
		Authorize: func(name, query, _ string) error { return pubauth.Check(authSecret, name, query, time.Now()) }}
	if err := gw.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	base := "rtsp://" + gw.Addr().String()
	past := time.Now().Add(-time.Hour).Unix()
	future := time.Now().Add(time.Hour).Unix()

	for _, c := range []struct{ desc, url string }{
		{"no key", base + "/live/a"},
		{"wrong key", base + "/live/b?" + pubauth.Query(authSecret, "live/other", 0)},
		{"expired", base + "/live/c?" + pubauth.Query(authSecret, "live/c", past)},
	} {
		desc, _ := h264Desc()
		cl := &gortsplib.Client{}
		err := cl.StartRecording(c.url, desc)
		if err == nil {
			cl.Close()
			t.Errorf("%s: publish accepted", c.desc)
			continue
		}
		if !strings.Contains(err.Error(), "403") {
			t.Errorf("%s: %v, want 403", c.desc, err)
		}
	}
	origin.mu.Lock()
	reached := len(origin.requests)
	origin.mu.Unlock()
	if reached != 0 {
		t.Fatalf("refused publishers sent %d requests to the origin", reached)
	}

	desc, medi := h264Desc()
	cl := &gortsplib.Client{}
	if err := cl.StartRecording(base+"/live/ok?"+pubauth.Query(authSecret, "live/ok", future), desc); err != nil {
		t.Fatalf("right key: %v", err)
	}
	defer cl.Close()
	const n = 50
	for i := range n {
		if err := cl.WritePacketRTP(medi, rtpPacket(uint16(i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "packets at the origin", func() bool { return origin.count("/live/ok") == n })
}

// TestPlayAuthorization: with AuthorizePlay, DESCRIBE without a token, with a wrong,
// expired or other-NAME token gets 403 and no Location; the right token gets the 302 and
// the Location carries the token on to the origin.
func TestPlayAuthorization(t *testing.T) {
	const playSecret = authtest.PlaySecret
	s := startServer(t, func(s *Server) { s.AuthorizePlay = pubauth.PlayAuthorizer(playSecret) })
	gw := "rtsp://" + s.Addr().String()
	future := time.Now().Add(time.Hour).Unix()
	for _, c := range authtest.BadTokens("live/cam1", true) {
		res, _ := exchange(t, s.Addr().String(), req("DESCRIBE", gw+"/live/cam1?"+c.Query, 1))
		if res[0].StatusCode != base.StatusForbidden || res[0].Header["Location"] != nil {
			t.Errorf("%s: %d %v, want 403 without Location", c.Desc, res[0].StatusCode, res[0].Header["Location"])
		}
	}
	q := pubauth.TokenQuery(playSecret, "live/cam1", future, "127.0.0.1")
	res, _ := exchange(t, s.Addr().String(), req("DESCRIBE", gw+"/live/cam1?"+q, 1))
	if res[0].StatusCode != base.StatusFound || len(res[0].Header["Location"]) != 1 || res[0].Header["Location"][0] != registered+"live/cam1?"+q {
		t.Errorf("right token: %d %v", res[0].StatusCode, res[0].Header["Location"])
	}
}
