package httpsrv

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/peergate/peergate/origin/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
)

// chromium runs headless Chromium on url with extra flags and returns its stdout.
func chromium(t *testing.T, url string, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found in PATH: apt-get install -y chromium")
	}
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-first-run", "--mute-audio", "--autoplay-policy=no-user-gesture-required",
		"--user-data-dir=" + t.TempDir()}
	args = append(append(args, extra...), url)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, tail(stderr.String(), 2000))
	}
	return stdout.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

var (
	stateRe = regexp.MustCompile(`data-state="([a-z]+)"`)
	widthRe = regexp.MustCompile(`data-width="([0-9]+)"`)
	timeRe  = regexp.MustCompile(`data-time="([0-9.]+)"`)
)

// TestEmbedChromium: embed.html of a live H.264 stream plays in headless Chromium's native
// HLS player: the page's script reports "playing" with the stream's width.
func TestEmbedChromium(t *testing.T) {
	e := newEnv(t, media.Config{})
	s := e.startHTTP(nil)
	e.publishFFmpeg("live/embed", mediatest.Source{})
	url := baseURL(s) + "/live/embed/embed.html"

	// Virtual time lets the page run for the budget, then the DOM (with the state the
	// page's script wrote into <html data-*>) is dumped.
	dom := chromium(t, url, "--virtual-time-budget=15000", "--dump-dom")
	state, width, ptime := match(stateRe, dom), match(widthRe, dom), match(timeRe, dom)
	t.Logf("chromium: state=%s width=%s time=%s", state, width, ptime)
	if state != "playing" {
		t.Fatalf("video state %q, want playing; DOM head:\n%s", state, tail(dom, 3000))
	}
	if w, _ := strconv.Atoi(width); w != 640 {
		t.Fatalf("videoWidth %s, want 640", width)
	}
	if protoStats(e.tbl, media.ProtoHLS).EgressBytes == 0 {
		t.Fatal("browser fetched no HLS bytes")
	}

	shot := filepath.Join(t.ArtifactDir(), "embed.png")
	chromium(t, url, "--virtual-time-budget=8000", "--window-size=640,360", "--screenshot="+shot)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 1000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s (keep it with go test -artifacts -outputdir=DIR)", shot)
}

func match(re *regexp.Regexp, s string) string {
	if m := re.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}
