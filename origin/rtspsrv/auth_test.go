package rtspsrv

import (
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"

	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/pubauth"
)

const authSecret = "publish-secret-0123456789"

// TestPublishAuthorization: with Authorize set, ANNOUNCE without a key, with a wrong key or
// with an expired key gets 403 and never reaches the table; the right key records.
func TestPublishAuthorization(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s := &Server{Address: "127.0.0.1:0", Table: tbl,
		Authorize: func(name, query, _ string) error { return pubauth.Check(authSecret, name, query, time.Now()) }}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "rtsp://" + s.Addr().String()
	past := time.Now().Add(-time.Hour).Unix()
	future := time.Now().Add(time.Hour).Unix()
	desc := func() *description.Session {
		return &description.Session{Medias: []*description.Media{{
			Type:    description.MediaTypeVideo,
			Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: sps720, PPS: []byte{0x68, 0xee, 0x3c, 0x80}}},
		}}}
	}
	record := func(u string) (*gortsplib.Client, error) {
		tcp := gortsplib.ProtocolTCP
		c := &gortsplib.Client{Protocol: &tcp}
		if err := c.StartRecording(u, desc()); err != nil {
			return nil, err
		}
		return c, nil
	}

	for _, c := range []struct{ desc, name, url string }{
		{"no key", "live/a", base + "/live/a"},
		{"wrong key", "live/b", base + "/live/b?" + pubauth.Query(authSecret, "live/other", 0)},
		{"expired", "live/c", base + "/live/c?" + pubauth.Query(authSecret, "live/c", past)},
	} {
		cl, err := record(c.url)
		if err == nil {
			cl.Close()
			t.Errorf("%s: publish accepted", c.desc)
			continue
		}
		if !strings.Contains(err.Error(), "403") {
			t.Errorf("%s: error %v, want 403", c.desc, err)
		}
		if tbl.Get(c.name) != nil {
			t.Errorf("%s: %s reached the table", c.desc, c.name)
		}
	}

	cl, err := record(base + "/live/ok?" + pubauth.Query(authSecret, "live/ok", future))
	if err != nil {
		t.Fatalf("right key: %v", err)
	}
	defer cl.Close()
	if !tbl.Live("live/ok") {
		t.Fatal("right key: not live after RECORD")
	}
}
