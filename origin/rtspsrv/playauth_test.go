package rtspsrv

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rbase "github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/pubauth"
)

const playSecret = "play-secret-0123456789ab"

// TestPlayAuthorization: with AuthorizePlay, ffprobe playing without a token, with a
// wrong, expired or other-NAME token is refused (DESCRIBE 403), and so is a SETUP of a
// player that skipped DESCRIBE; with the right token it decodes the stream an ffmpeg
// publisher sends, over TCP and UDP.
func TestPlayAuthorization(t *testing.T) {
	mediatest.Tool(t, "ffmpeg")
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s := &Server{Address: "127.0.0.1:0", UDPRTPAddress: "127.0.0.1:0", Table: tbl, AuthorizePlay: pubauth.PlayAuthorizer(playSecret)}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "rtsp://" + s.Addr().String()
	p := mediatest.PublishRTSP(t, base+"/live/cam1", "tcp", mediatest.Source{Size: "320x240"})
	defer p.Stop()
	mediatest.WaitLive(t, tbl, "live/cam1", p)

	future := time.Now().Add(time.Hour).Unix()
	for _, c := range []struct{ desc, query string }{
		{"missing", ""},
		{"wrong", "?token=" + strconv.FormatInt(future, 10) + ".AAAAAAAAAAAAAAAAAAAAAA"},
		{"expired", "?" + pubauth.TokenQuery(playSecret, "live/cam1", time.Now().Add(-time.Minute).Unix(), "")},
		{"other name", "?" + pubauth.TokenQuery(playSecret, "live/cam2", future, "")},
	} {
		_, err := mediatest.ProbeStream(context.Background(), base+"/live/cam1"+c.query, mediatest.ReadOptions{RTSPTransport: "tcp", Frames: 5, Timeout: 30 * time.Second})
		if err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("%s: %v, want a 403", c.desc, err)
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
		pr, err := mediatest.ProbeStream(context.Background(), base+"/live/cam1?"+pubauth.TokenQuery(playSecret, "live/cam1", future, "127.0.0.1"),
			mediatest.ReadOptions{RTSPTransport: tr, Frames: 10, Timeout: 60 * time.Second})
		if err != nil || pr.Width != 320 {
			t.Errorf("right token over %s: %+v %v", tr, pr, err)
		}
	}
}

// hookServer is a real HTTP authorization hook: "live/ok*" is allowed, "live/slow" answers
// after its caller gave up, anything else is denied. It records what it was asked.
type hookServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []pubauth.HookRequest
	stop chan struct{}
}

func newHookServer(t *testing.T) *hookServer {
	hs := &hookServer{stop: make(chan struct{})}
	hs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req pubauth.HookRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		hs.mu.Lock()
		hs.seen = append(hs.seen, req)
		hs.mu.Unlock()
		switch {
		case strings.HasPrefix(req.Name, "live/ok"):
			w.WriteHeader(http.StatusOK)
		case req.Name == "live/slow":
			select {
			case <-r.Context().Done():
			case <-hs.stop:
			}
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	t.Cleanup(func() { close(hs.stop); hs.Close() })
	return hs
}

func (hs *hookServer) asked(name string) []pubauth.HookRequest {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var out []pubauth.HookRequest
	for _, r := range hs.seen {
		if r.Name == name {
			out = append(out, r)
		}
	}
	return out
}

// TestPublishHook: with an HTTP hook as Authorize, ffmpeg publishing a NAME the hook denies,
// or one the hook does not answer in time, is refused and never reaches the table; a NAME
// the hook allows goes live. The hook hears action, protocol, NAME, client address, query.
func TestPublishHook(t *testing.T) {
	mediatest.Tool(t, "ffmpeg")
	hs := newHookServer(t)
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
		if len(hs.asked(name)) == 0 {
			t.Errorf("%s: the hook was not asked", name)
		}
	}
	p := mediatest.PublishRTSP(t, base+"/live/ok?user=alice", "tcp", mediatest.Source{Size: "320x240"})
	defer p.Stop()
	mediatest.WaitLive(t, tbl, "live/ok", p)
	got := hs.asked("live/ok")
	want := pubauth.HookRequest{Action: "publish", Protocol: "rtsp", Name: "live/ok", Client: "127.0.0.1", Query: "user=alice"}
	if len(got) == 0 || got[0] != want {
		t.Errorf("hook heard %+v, want %+v", got, want)
	}
}
