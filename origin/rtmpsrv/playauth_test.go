package rtmpsrv

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/pubauth"
)

const playSecret = "play-secret-0123456789ab"

// TestPlayAuthorization: with AuthorizePlay, ffprobe playing without a token, with a
// wrong, expired or other-NAME token is refused (NetStream.Play.Failed); with the right
// token it decodes the stream an ffmpeg publisher sends.
func TestPlayAuthorization(t *testing.T) {
	mediatest.Tool(t, "ffmpeg")
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s := &Server{Address: "127.0.0.1:0", Table: tbl, HandshakeTimeout: 5 * time.Second, MaxConns: 16,
		AuthorizePlay: pubauth.PlayAuthorizer(playSecret)}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "rtmp://" + s.Addr().String()
	p := mediatest.PublishRTMP(t, base+"/live/cam1", mediatest.Source{Size: "320x240"})
	defer p.Stop()
	mediatest.WaitLive(t, tbl, "live/cam1", p)

	future := time.Now().Add(time.Hour).Unix()
	for _, c := range []struct{ desc, query string }{
		{"missing", ""},
		{"wrong", "?token=" + strconv.FormatInt(future, 10) + ".AAAAAAAAAAAAAAAAAAAAAA"},
		{"expired", "?" + pubauth.TokenQuery(playSecret, "live/cam1", time.Now().Add(-time.Minute).Unix(), "")},
		{"other name", "?" + pubauth.TokenQuery(playSecret, "live/cam2", future, "")},
	} {
		_, err := mediatest.ProbeStream(context.Background(), base+"/live/cam1"+c.query, mediatest.ReadOptions{Frames: 5, Timeout: 30 * time.Second})
		if err == nil {
			t.Errorf("%s: played", c.desc)
		}
	}
	pr, err := mediatest.ProbeStream(context.Background(), base+"/live/cam1?"+pubauth.TokenQuery(playSecret, "live/cam1", future, "127.0.0.1"),
		mediatest.ReadOptions{Frames: 10, Timeout: 60 * time.Second})
	if err != nil || pr.Width != 320 {
		t.Fatalf("right token: %+v %v", pr, err)
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
		if len(hs.asked(name)) == 0 {
			t.Errorf("%s: the hook was not asked", name)
		}
	}
	p := mediatest.PublishRTMP(t, base+"/live/ok?user=alice", mediatest.Source{Size: "320x240"})
	defer p.Stop()
	mediatest.WaitLive(t, tbl, "live/ok", p)
	got := hs.asked("live/ok")
	want := pubauth.HookRequest{Action: "publish", Protocol: "rtmp", Name: "live/ok", Client: "127.0.0.1", Query: "user=alice"}
	if len(got) == 0 || got[0] != want {
		t.Errorf("hook heard %+v, want %+v", got, want)
	}
}
