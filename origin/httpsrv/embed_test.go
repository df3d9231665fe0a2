package httpsrv

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/streamname"
)

// TestHLSJSRoute: the origin serves the embedded hls.js at HLSJSPath with long cache
// headers and an ETag that revalidates, and the path can never be a stream route.
func TestHLSJSRoute(t *testing.T) {
	if _, _, ok := streamname.FromHTTPPath(HLSJSPath); ok {
		t.Fatalf("%s parses as a stream path", HLSJSPath)
	}
	e := newEnv(t, media.Config{})
	s := e.startHTTP(nil)
	res, err := http.Get(baseURL(s) + HLSJSPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") ||
		!strings.Contains(res.Header.Get("Cache-Control"), "max-age=31536000") || len(body) != len(hlsJS) ||
		!strings.Contains(string(body[:200]), "function") {
		t.Fatalf("status %d, headers %v, %d bytes", res.StatusCode, res.Header, len(body))
	}
	req, _ := http.NewRequest(http.MethodGet, baseURL(s)+HLSJSPath, nil)
	req.Header.Set("If-None-Match", res.Header.Get("ETag"))
	res2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if res2.StatusCode != http.StatusNotModified {
		t.Fatalf("revalidation: status %d", res2.StatusCode)
	}
	// Other paths under the prefix are not served.
	res3, err := http.Get(baseURL(s) + "/_peergate/other.js")
	if err != nil {
		t.Fatal(err)
	}
	res3.Body.Close()
	if res3.StatusCode != http.StatusNotFound {
		t.Fatalf("/_peergate/other.js: status %d", res3.StatusCode)
	}
}

// TestEmbedPageHLSJS: embed.html names hls.js by a host-relative path with its integrity,
// keeps the playlist relative (tokens carried), and its CSP admits both.
func TestEmbedPageHLSJS(t *testing.T) {
	e := newEnv(t, media.Config{})
	s := e.startHTTP(nil)
	e.synth("live/page", 25, 25, 1000)
	res, err := http.Get(baseURL(s) + "/live/page/embed.html?token=abc")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	page := string(body)
	for _, want := range []string{`data-src="index.m3u8?token=abc"`, `data-hlsjs="/_peergate/hls.min.js"`, `data-hlsjs-integrity="sha384-`} {
		if !strings.Contains(page, want) {
			t.Fatalf("page lacks %s:\n%s", want, page)
		}
	}
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "worker-src blob:") {
		t.Fatalf("CSP %q", csp)
	}
}
