package rtmpsrv

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/pubauth"
)

const authSecret = "publish-secret-0123456789"

// TestPublishAuthorization: with Authorize set, a publisher without a key, with a wrong key
// or with an expired key gets NetStream.Publish.Unauthorized and never reaches the table;
// the right key (on the stream key or on the app) publishes.
func TestPublishAuthorization(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s := &Server{Address: "127.0.0.1:0", Table: tbl, HandshakeTimeout: 5 * time.Second, MaxConns: 16,
		Authorize: func(name, query, _ string) error { return pubauth.Check(authSecret, name, query, time.Now()) }}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "rtmp://" + s.Addr().String()
	past := time.Now().Add(-time.Hour).Unix()
	future := time.Now().Add(time.Hour).Unix()

	for _, c := range []struct{ desc, name, url string }{
		{"no key", "live/a", base + "/live/a"},
		{"wrong key", "live/b", base + "/live/b?" + pubauth.Query(authSecret, "live/other", 0)},
		{"other secret", "live/c", base + "/live/c?" + pubauth.Query("another-secret-0123456", "live/c", 0)},
		{"expired", "live/d", base + "/live/d?" + pubauth.Query(authSecret, "live/d", past)},
	} {
		u, _ := url.Parse(c.url)
		cl := &gortmplib.Client{URL: u, Publish: true}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cl.Initialize(ctx)
		cancel()
		if err == nil {
			cl.Close()
			t.Errorf("%s: publish accepted", c.desc)
			continue
		}
		if !strings.Contains(err.Error(), "NetStream.Publish.Unauthorized") {
			t.Errorf("%s: error %v, want NetStream.Publish.Unauthorized", c.desc, err)
		}
		if tbl.Get(c.name) != nil {
			t.Errorf("%s: %s reached the table", c.desc, c.name)
		}
	}

	for _, c := range []struct{ desc, name, url string }{
		{"key on the stream", "live/ok1", base + "/live/ok1?" + pubauth.Query(authSecret, "live/ok1", future)},
		{"key on the app", "live/ok2", base + "/live?" + pubauth.Query(authSecret, "live/ok2", 0) + "/ok2"},
	} {
		u, _ := url.Parse(c.url)
		cl := &gortmplib.Client{URL: u, Publish: true}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cl.Initialize(ctx)
		cancel()
		if err != nil {
			t.Errorf("%s: %v", c.desc, err)
			continue
		}
		track := &gortmplib.Track{Codec: &codecs.H264{SPS: sps720, PPS: []byte{0x68, 0xee, 0x3c, 0x80}}}
		w := &gortmplib.Writer{Conn: cl, Tracks: []*gortmplib.Track{track}}
		if err := w.Initialize(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 60; i++ {
			nalu := []byte{0x41, 0x9a, 0x02}
			if i%25 == 0 {
				nalu = []byte{0x65, 0x88, 0x84}
			}
			d := time.Duration(i) * 40 * time.Millisecond
			if err := w.WriteH264(track, d, d, [][]byte{nalu}); err != nil {
				t.Fatal(err)
			}
		}
		if !mediatest.Eventually(10*time.Second, func() bool { return tbl.Live(c.name) }) {
			t.Errorf("%s: %s never went live", c.desc, c.name)
		}
		cl.Close()
	}
}
