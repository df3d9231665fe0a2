package httpsrv

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/authtest"
	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/pubauth"
)

const playSecret = authtest.PlaySecret

// status GETs url with the User-Agent ua and returns the status, and the body when it is
// not MPEG-TS (which never ends).
func status(t *testing.T, url, ua string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", ua)
	res, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	if strings.HasSuffix(req.URL.Path, "/mpegts") {
		return res.StatusCode, ""
	}
	var b strings.Builder
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return res.StatusCode, b.String()
}

// firstURI returns the first URI line of a playlist.
func firstURI(t *testing.T, playlist string) string {
	t.Helper()
	for _, l := range strings.Split(playlist, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			return l
		}
	}
	t.Fatalf("no URI in %q", playlist)
	return ""
}

// TestPlayAuthorization: with AuthorizePlay, the first request of a session (HLS
// playlist or segment, MPEG-TS, embed.html) without a token, with a wrong, expired or
// other-NAME token gets 403. The right token opens an HLS session whose media playlist and
// segment requests need no token, and which outlives the token's expiry while it keeps
// requesting; another viewer (User-Agent) without a token, and the same viewer after its
// session timed out, get 403 again.
func TestPlayAuthorization(t *testing.T) {
	e := newEnv(t, media.Config{})
	s := e.startHTTP(func(s *Server) {
		s.AuthorizePlay = pubauth.PlayAuthorizer(playSecret)
		s.HLS.SessionTimeout = 2 * time.Second
	})
	e.synth("live/cam", 25, 25, 1000)
	base := baseURL(s) + "/live/cam/"
	future := time.Now().Add(time.Hour).Unix()
	good := "?" + pubauth.TokenQuery(playSecret, "live/cam", future, "127.0.0.1")
	for _, c := range authtest.BadTokens("live/cam", true) {
		for _, file := range []string{"index.m3u8", "stream.m3u8", "seg0.ts", "mpegts", "embed.html"} {
			if code, _ := status(t, base+file+"?"+c.Query, "refused-"+c.Desc); code != http.StatusForbidden {
				t.Errorf("%s %s: %d, want 403", c.Desc, file, code)
			}
		}
	}
	for _, file := range []string{"mpegts", "embed.html"} {
		if code, _ := status(t, base+file+good, "ok"); code != 200 {
			t.Errorf("right token %s: %d", file, code)
		}
	}

	// A token that expires in 2 s opens the session; the player keeps going after that.
	exp := time.Now().Add(2 * time.Second).Unix()
	short := "?" + pubauth.TokenQuery(playSecret, "live/cam", exp, "")
	code, master := status(t, base+"index.m3u8"+short, "viewer-a")
	if code != 200 {
		t.Fatalf("right token index.m3u8: %d", code)
	}
	// gohlslib carries the request's query on to the URIs it lists.
	media := firstURI(t, master)
	if !strings.HasSuffix(media, short) {
		t.Fatalf("media playlist URI %q does not carry the token", media)
	}
	bare, _, _ := strings.Cut(media, "?")
	if code, _ := status(t, base+bare, "viewer-b"); code != http.StatusForbidden {
		t.Errorf("another viewer's media playlist without a token: %d, want 403", code)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Unix() <= exp+1 {
		if time.Now().After(deadline) {
			t.Fatal("the clock did not pass the expiry in 30s")
		}
		code, pl := status(t, base+media, "viewer-a")
		if code != 200 {
			t.Fatalf("session's media playlist: %d", code)
		}
		seg := firstURI(t, pl)
		if !strings.HasSuffix(seg, short) {
			t.Fatalf("segment URI %q does not carry the token", seg)
		}
		if code, _ := status(t, base+seg, "viewer-a"); code != 200 {
			t.Fatalf("session's segment %s: %d", seg, code)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Past the expiry, inside the session: even the stale multivariant URL is served.
	if code, _ := status(t, base+"index.m3u8"+short, "viewer-a"); code != 200 {
		t.Errorf("session's reload after the token expired: %d", code)
	}
	// A new viewer with the expired URL is refused.
	if code, _ := status(t, base+"index.m3u8"+short, "viewer-c"); code != http.StatusForbidden {
		t.Errorf("copied URL after expiry: %d, want 403", code)
	}
	// Once the session timed out the viewer needs a valid token again.
	if !mediatest.Eventually(15*time.Second, func() bool { return s.Stats().HLSSessions == 0 }) {
		t.Fatalf("%d HLS sessions left after the session timeout", s.Stats().HLSSessions)
	}
	for _, u := range []string{base + media, base + "index.m3u8" + short} {
		if code, _ := status(t, u, "viewer-a"); code != http.StatusForbidden {
			t.Errorf("%s after the session ended: %d, want 403", u, code)
		}
	}
}
