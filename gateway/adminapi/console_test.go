package adminapi

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/shared/admin"
	"github.com/peergate/peergate/shared/cluster"
)

// TestConsolePage: GET / answers the console (HTML with its hooks and a CSP that admits its
// inline script by hash); other unknown paths stay 404.
func TestConsolePage(t *testing.T) {
	t.Parallel()
	base := startAPI(t)
	res, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	page := string(body)
	for _, want := range []string{`id="origins"`, `id="streams"`, `id="search"`, `id="explain"`,
		`"api/v1/origins"`, `"api/v1/streams"`, `"api/v1/explain?"`, "embed.html", `q.get("http")`} {
		if !strings.Contains(page, want) {
			t.Errorf("console lacks %s", want)
		}
	}
	for _, bad := range []string{"http://", "https://", "<link", "<script src", "innerHTML"} {
		if strings.Contains(page, bad) {
			t.Errorf("console contains %q (no external assets, no HTML injection)", bad)
		}
	}
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'sha256-") {
		t.Errorf("CSP %q", csp)
	}
	for _, p := range []string{"/index.html", "/console", "/x/"} {
		r, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, r.StatusCode)
		}
	}
}

func chromiumArgs(t *testing.T, extra ...string) []string {
	t.Helper()
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Fatal("chromium not found in PATH: apt-get install -y chromium")
	}
	return append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + t.TempDir(),
		"--window-size=1280,720", "--virtual-time-budget=3000"}, extra...)
}

func runChromium(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "chromium", args...).Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return string(out)
}

// TestConsoleChromium: headless Chromium renders the console against a table of two origins:
// both origins, every stream with the origin serving it, and play links through the gateway's
// HTTP address from ?http= appear in the DOM after the first poll, and ?explain= runs the
// explain form.
func TestConsoleChromium(t *testing.T) {
	tab := resolve.New(resolve.Options{})
	o1 := origin("origin-a", cluster.StateUp, "http://10.0.0.1:8081")
	o1.Load = cluster.Load{Clients: 420, EgressBps: 610e6, CPU: 0.35}
	o1.Capacity = cluster.Capacity{MaxClients: 1000, MaxBandwidthBps: 1e9}
	o2 := origin("origin-b", cluster.StateDraining, "http://10.0.0.2:8081")
	o2.Load = cluster.Load{Clients: 95, EgressBps: 120e6, CPU: 0.8}
	o2.Capacity = cluster.Capacity{MaxClients: 100}
	tab.ReplaceAll([]cluster.OriginView{
		{Origin: o1, Streams: []cluster.Stream{
			{Name: "live/lobby", State: cluster.StreamRunning},
			{Name: "live/stage", State: cluster.StreamRunning},
		}},
		{Origin: o2, Streams: []cluster.Stream{
			{Name: "live/stage", State: cluster.StreamRunning},
			{Name: "vod/intro", State: cluster.StreamOnDemand},
		}},
		{Origin: origin("origin-c", cluster.StateUp, "http://10.0.0.3:8081"), Streams: []cluster.Stream{
			{Name: "live/stage", State: cluster.StreamRunning, Upstream: "origin-a"}, // a relay copy
		}},
	})
	s := &admin.Server{Address: "127.0.0.1:0", Handlers: Handlers(tab)}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	url := "http://" + s.Addr().String() + "/?http=18080&explain=live/stage"

	dom := runChromium(t, chromiumArgs(t, "--dump-dom", url)...)
	for _, want := range []string{
		`data-origin="origin-a"`, `data-origin="origin-b"`,
		`data-stream="live/lobby"`, `data-stream="live/stage"`, `data-stream="vod/intro"`,
		`href="http://127.0.0.1:18080/live/stage/embed.html"`,
		">draining<", ">ondemand<", "420 / 1000", "updated ",
		`id="explain-result"`, ">ok<", ">chosen<", // the explain form ran against /api/v1/explain
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM lacks %s", want)
		}
	}
	// Each stream row names the origins listing it.
	// A relay shows the origin it pulls from.
	for name, origins := range map[string][]string{"live/lobby": {"origin-a"}, "live/stage": {"origin-a", "origin-b", "origin-c", "\u2190 origin-a"}, "vod/intro": {"origin-b"}} {
		i := strings.Index(dom, `data-stream="`+name+`"`)
		if i < 0 {
			continue
		}
		row := dom[i:]
		row = row[:strings.Index(row, "</tr>")]
		for _, o := range origins {
			if !strings.Contains(row, o) {
				t.Errorf("stream %s row lacks origin %s: %s", name, o, row)
			}
		}
	}
	if t.Failed() {
		t.Fatalf("DOM:\n%s", dom)
	}

	shot := filepath.Join(t.ArtifactDir(), "console.png")
	runChromium(t, chromiumArgs(t, "--screenshot="+shot, "--hide-scrollbars", url)...)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 5000 {
		t.Fatalf("screenshot: %v %v", fi, err)
	}
	t.Logf("screenshot: %s (kept with go test -artifacts -outputdir=DIR)", shot)
}
