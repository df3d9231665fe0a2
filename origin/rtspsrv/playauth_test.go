package rtspsrv

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	rbase "github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/peergate/peergate/internal/authtest"
	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/pubauth"
)

// TestPlayAuthorization: with AuthorizePlay, ffprobe playing without a token, with a
// wrong, expired or other-NAME token is refused (DESCRIBE 403), and so is a SETUP of a
// player that skipped DESCRIBE; with the right token it decodes the stream an ffmpeg
// publisher sends, over TCP and UDP.
func TestPlayAuthorization(t *testing.T) {
	mediatest.Tool(t, "ffmpeg")
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s := &Server{Address: "127.0.0.1:0", UDPRTPAddress: "127.0.0.1:0", Table: tbl, AuthorizePlay: pubauth.PlayAuthorizer(authtest.PlaySecret)}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "rtsp://" + s.Addr().String()
	p := mediatest.PublishRTSP(t, base+"/live/cam1", "tcp", mediatest.Source{Size: "320x240"})
	defer p.Stop()
	mediatest.WaitLive(t, tbl, "live/cam1", p)

	for _, c := range authtest.BadTokens("live/cam1", false) {
		_, err := mediatest.ProbeStream(context.Background(), base+"/live/cam1?"+c.Query, mediatest.ReadOptions{RTSPTransport: "tcp", Frames: 5, Timeout: 30 * time.Second})
		if err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("%s: %v, want a 403", c.Desc, err)
		}
	}
	// A SETUP without DESCRIBE (and without a token) is checked itself.
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	setup := "SETUP " + base + "/live/cam1/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
	if _, err := c.Write([]byte(setup)); err != nil {
		t.Fatal(err)
	}
	var res rbase.Response
	if err := res.Unmarshal(bufio.NewReader(c)); err != nil || res.StatusCode != rbase.StatusForbidden {
		t.Errorf("SETUP without DESCRIBE or token: %v %v, want 403", res.StatusCode, err)
	}
	for _, tr := range []string{"tcp", "udp"} {
		pr, err := mediatest.ProbeStream(context.Background(), base+"/live/cam1?"+authtest.GoodToken("live/cam1", "127.0.0.1"),
			mediatest.ReadOptions{RTSPTransport: tr, Frames: 10, Timeout: 60 * time.Second})
		if err != nil || pr.Width != 320 {
			t.Errorf("right token over %s: %+v %v", tr, pr, err)
		}
	}
}

// TestPublishHook: with an HTTP hook as Authorize, ffmpeg publishing a NAME the hook denies,
// or one the hook does not answer in time, is refused and never reaches the table; a NAME
// the hook allows goes live. The hook hears action, protocol, NAME, client address, query.
func TestPublishHook(t *testing.T) {
	mediatest.Tool(t, "ffmpeg")
	hs := authtest.NewHook(t)
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s := &Server{Address: "127.0.0.1:0", Table: tbl,
		Authorize: pubauth.PublishAuthorizer("", &pubauth.Hook{URL: hs.URL, Timeout: 500 * time.Millisecond}, "rtsp")}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "rtsp://" + s.Addr().String()
	for _, name := range []string{"live/no", "live/slow"} {
		p := mediatest.PublishRTSP(t, base+"/"+name, "tcp", mediatest.Source{Size: "320x240"})
		err, done := p.Wait(30 * time.Second)
		if !done {
			p.Stop()
			t.Errorf("%s: ffmpeg still publishing after 30s", name)
		} else if err == nil {
			t.Errorf("%s: ffmpeg exited cleanly, want a refusal: %s", name, p.Output())
		}
		if tbl.Get(name) != nil {
			t.Errorf("%s reached the table", name)
		}
		if len(hs.Asked(name)) == 0 {
			t.Errorf("%s: the hook was not asked", name)
		}
	}
	p := mediatest.PublishRTSP(t, base+"/live/ok?user=alice", "tcp", mediatest.Source{Size: "320x240"})
	defer p.Stop()
	mediatest.WaitLive(t, tbl, "live/ok", p)
	got := hs.Asked("live/ok")
	want := pubauth.HookRequest{Action: "publish", Protocol: "rtsp", Name: "live/ok", Client: "127.0.0.1", Query: "user=alice"}
	if len(got) == 0 || got[0] != want {
		t.Errorf("hook heard %+v, want %+v", got, want)
	}
}
