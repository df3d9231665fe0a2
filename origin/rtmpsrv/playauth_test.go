package rtmpsrv

import (
	"context"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/authtest"
	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/pubauth"
)

// TestPlayAuthorization: with AuthorizePlay, ffprobe playing without a token, with a
// wrong, expired or other-NAME token is refused (NetStream.Play.Failed); with the right
// token it decodes the stream an ffmpeg publisher sends.
func TestPlayAuthorization(t *testing.T) {
	mediatest.Tool(t, "ffmpeg")
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s := &Server{Address: "127.0.0.1:0", Table: tbl, HandshakeTimeout: 5 * time.Second, MaxConns: 16,
		AuthorizePlay: pubauth.PlayAuthorizer(authtest.PlaySecret)}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "rtmp://" + s.Addr().String()
	p := mediatest.PublishRTMP(t, base+"/live/cam1", mediatest.Source{Size: "320x240"})
	defer p.Stop()
	mediatest.WaitLive(t, tbl, "live/cam1", p)

	for _, c := range authtest.BadTokens("live/cam1", false) {
		_, err := mediatest.ProbeStream(context.Background(), base+"/live/cam1?"+c.Query, mediatest.ReadOptions{Frames: 5, Timeout: 30 * time.Second})
		if err == nil {
			t.Errorf("%s: played", c.Desc)
		}
	}
	pr, err := mediatest.ProbeStream(context.Background(), base+"/live/cam1?"+authtest.GoodToken("live/cam1", "127.0.0.1"),
		mediatest.ReadOptions{Frames: 10, Timeout: 60 * time.Second})
	if err != nil || pr.Width != 320 {
		t.Fatalf("right token: %+v %v", pr, err)
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
	s := &Server{Address: "127.0.0.1:0", Table: tbl, HandshakeTimeout: 5 * time.Second, MaxConns: 16,
		Authorize: pubauth.PublishAuthorizer("", &pubauth.Hook{URL: hs.URL, Timeout: 500 * time.Millisecond}, "rtmp")}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "rtmp://" + s.Addr().String()
	for _, name := range []string{"live/no", "live/slow"} {
		p := mediatest.PublishRTMP(t, base+"/"+name, mediatest.Source{Size: "320x240"})
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
	p := mediatest.PublishRTMP(t, base+"/live/ok?user=alice", mediatest.Source{Size: "320x240"})
	defer p.Stop()
	mediatest.WaitLive(t, tbl, "live/ok", p)
	got := hs.Asked("live/ok")
	want := pubauth.HookRequest{Action: "publish", Protocol: "rtmp", Name: "live/ok", Client: "127.0.0.1", Query: "user=alice"}
	if len(got) == 0 || got[0] != want {
		t.Errorf("hook heard %+v, want %+v", got, want)
	}
}
