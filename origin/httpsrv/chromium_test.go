package httpsrv

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/browsertest"
	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
)

// TestEmbedChromium: embed.html of a live H.264 stream plays in headless Chromium's native
// HLS player: the page's script reports "playing" with the stream's width, and the
// video's clock advances.
func TestEmbedChromium(t *testing.T) {
	playEmbedChromium(t, "", "native", "embed.png")
}

// TestEmbedHLSJSChromium: with ?hlsjs=1 the same page loads the embedded hls.js from the
// origin (its integrity checked by the browser) and plays through Media Source Extensions.
func TestEmbedHLSJSChromium(t *testing.T) {
	playEmbedChromium(t, "?hlsjs=1", "hlsjs", "embed-hlsjs.png")
}

func playEmbedChromium(t *testing.T, query, engine, shotName string) {
	e := newEnv(t, media.Config{})
	s := e.startHTTP(nil)
	e.publishFFmpeg("live/embed", mediatest.Source{})
	url := baseURL(s) + "/live/embed/embed.html" + query

	c := browsertest.Start(t)
	session := c.Open(url)
	first, last := c.WatchEmbed(session, 45*time.Second)
	t.Logf("chromium: first playing %+v, last %+v", first, last)
	if last.State != "playing" || last.Width != 640 || last.Time <= first.Time+1 {
		t.Fatalf("video did not play: first %+v last %+v", first, last)
	}
	if last.Engine != engine {
		t.Fatalf("engine %q, want %q", last.Engine, engine)
	}
	if last.Hls != (engine == "hlsjs") {
		t.Fatalf("window.Hls loaded = %v on the %s path", last.Hls, engine)
	}
	if protoStats(e.tbl, media.ProtoHLS).EgressBytes == 0 {
		t.Fatal("browser fetched no HLS bytes")
	}

	png := c.Screenshot(session)
	path := filepath.Join(t.ArtifactDir(), shotName)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (kept with go test -artifacts -outputdir=DIR)", path)
}
