package rtmpgw

import (
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/amf0"

	"github.com/peergate/peergate/internal/authtest"
	"github.com/peergate/peergate/shared/pubauth"
)

const authSecret = "publish-secret-0123456789"

// TestPublishAuthorization: a publisher without a key, with a wrong key or with an expired
// key gets NetStream.Publish.Unauthorized from the gateway, is counted as unauthorized and
// never reaches the resolver or an origin; the right key is relayed.
func TestPublishAuthorization(t *testing.T) {
	o := startStandIn(t)
	res := &fakeResolver{base: o.base()}
	m := newFakeMetrics()
	gw := startGateway(t, &Server{Resolver: res, Mode: ModeRelay, Metrics: m,
		Authorize: func(name, query, _ string) error { return pubauth.Check(authSecret, name, query, time.Now()) }})
	base := "rtmp://" + gw.Addr().String()
	past := time.Now().Add(-time.Hour).Unix()
	future := time.Now().Add(time.Hour).Unix()

	refused := []struct{ desc, url string }{
		{"no key", base + "/live/a"},
		{"wrong key", base + "/live/b?" + pubauth.Query(authSecret, "live/other", 0)},
		{"other secret", base + "/live/c?" + pubauth.Query("another-secret-0123456", "live/c", 0)},
		{"expired", base + "/live/d?" + pubauth.Query(authSecret, "live/d", past)},
	}
	for _, c := range refused {
		err := publishFrames(c.url, 10)
		if err == nil || !strings.Contains(err.Error(), "NetStream.Publish.Unauthorized") {
			t.Errorf("%s: %v, want NetStream.Publish.Unauthorized", c.desc, err)
		}
	}
	if n := res.placed.Load(); n != 0 {
		t.Fatalf("refused publishers were placed %d times", n)
	}
	if o.received.Load() != 0 {
		t.Fatalf("the origin received %d frames from refused publishers", o.received.Load())
	}
	m.mu.Lock()
	got := m.redirects[OutcomeUnauthorized]
	m.mu.Unlock()
	if got != len(refused) {
		t.Errorf("unauthorized outcomes = %d, want %d", got, len(refused))
	}

	if err := publishFrames(base+"/live/ok?"+pubauth.Query(authSecret, "live/ok", future), 100); err != nil {
		t.Fatalf("right key: %v", err)
	}
	if !eventually(5*time.Second, func() bool { return o.received.Load() >= 100 }) {
		t.Errorf("origin received %d frames, want 100", o.received.Load())
	}
	if res.placed.Load() != 1 {
		t.Errorf("placed %d, want 1", res.placed.Load())
	}
}

// TestPlayAuthorization: with AuthorizePlay, a player without a token, with a wrong,
// expired or other-NAME token gets NetStream.Play.Failed before the resolver is asked and
// is counted as unauthorized; the right token is relayed, and the relay's play carries the
// token to the origin (which checks it again).
func TestPlayAuthorization(t *testing.T) {
	const playSecret = authtest.PlaySecret
	o := startStandIn(t)
	res := &fakeResolver{base: o.base()}
	m := newFakeMetrics()
	gw := startGateway(t, &Server{Resolver: res, Mode: ModeRelay, Metrics: m, AuthorizePlay: pubauth.PlayAuthorizer(playSecret)})
	addr := gw.Addr().String()
	future := time.Now().Add(time.Hour).Unix()
	refused := authtest.BadTokens("live/cam1", false)
	for _, c := range refused {
		rc := dialRaw(t, addr)
		if err := rc.connectAndPlay("live", "rtmp://"+addr+"/live", -1, "LNX 9,0,124,2", "play", "cam1?"+c.Query); err != nil {
			t.Fatal(err)
		}
		_, d, err := rc.nextCommand()
		if err != nil {
			t.Fatalf("%s: %v", c.Desc, err)
		}
		info, _ := d[3].(amf0.Object)
		if code, _ := info.GetString("code"); d[0] != "onStatus" || code != "NetStream.Play.Failed" {
			t.Errorf("%s: got %v, want NetStream.Play.Failed", c.Desc, d)
		}
		if err := closedWithin(rc.conn, 5*time.Second); err != nil {
			t.Errorf("%s: not closed", c.Desc)
		}
	}
	if n := res.resolved.Load(); n != 0 {
		t.Errorf("refused players were resolved %d times", n)
	}
	if got := m.redirect(OutcomeUnauthorized); got != len(refused) {
		t.Errorf("unauthorized outcomes = %d, want %d", got, len(refused))
	}

	q := pubauth.TokenQuery(playSecret, "live/cam1", future, "")
	if err := playFrames("rtmp://"+addr+"/live/cam1?"+q, 5); err != nil {
		t.Fatalf("right token: %v", err)
	}
	if last := o.lastURL.Load().(string); !strings.HasSuffix(last, "/live/cam1?"+q) {
		t.Errorf("the relay played %q at the origin, want the token carried", last)
	}
}
