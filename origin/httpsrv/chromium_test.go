package httpsrv

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
)

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// cdp drives Chromium over --remote-debugging-pipe (fd 3 in, fd 4 out, messages ended by NUL).
type cdp struct {
	t    *testing.T
	cmd  *exec.Cmd
	in   *os.File
	out  *bufio.Reader
	next int
	errs bytes.Buffer
}

func startCDP(t *testing.T) *cdp {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found in PATH: apt-get install -y chromium")
	}
	toChrome, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, fromChrome, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &cdp{t: t, in: inW, out: bufio.NewReader(outR)}
	c.cmd = exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-first-run", "--mute-audio", "--autoplay-policy=no-user-gesture-required",
		"--window-size=640,360", "--remote-debugging-pipe", "--user-data-dir="+t.TempDir(), "about:blank")
	c.cmd.ExtraFiles = []*os.File{toChrome, fromChrome}
	c.cmd.Stderr = &c.errs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toChrome.Close()
	fromChrome.Close()
	t.Cleanup(func() {
		inW.Close()
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
		outR.Close()
	})
	return c
}

// call sends one command and waits for its answer, skipping events.
func (c *cdp) call(session, method string, params any) json.RawMessage {
	c.t.Helper()
	c.next++
	msg := map[string]any{"id": c.next, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	b, _ := json.Marshal(msg)
	if _, err := c.in.Write(append(b, 0)); err != nil {
		c.t.Fatalf("cdp write: %v; chromium: %s", err, tail(c.errs.String(), 2000))
	}
	for {
		line, err := c.out.ReadBytes(0)
		if err != nil {
			c.t.Fatalf("cdp read: %v; chromium: %s", err, tail(c.errs.String(), 2000))
		}
		var res struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(line[:len(line)-1], &res); err != nil {
			c.t.Fatalf("cdp: %v", err)
		}
		if res.ID != c.next {
			continue // an event
		}
		if res.Error != nil {
			c.t.Fatalf("cdp %s: %s", method, res.Error.Message)
		}
		return res.Result
	}
}

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

	c := startCDP(t)
	var target struct {
		TargetID string `json:"targetId"`
	}
	_ = json.Unmarshal(c.call("", "Target.createTarget", map[string]any{"url": url}), &target)
	var att struct {
		SessionID string `json:"sessionId"`
	}
	_ = json.Unmarshal(c.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}), &att)

	type state struct {
		State  string  `json:"state"`
		Engine string  `json:"engine"`
		Hls    bool    `json:"hls"`
		Width  int     `json:"width"`
		Time   float64 `json:"time"`
	}
	read := func() state {
		var r struct {
			Result struct {
				Value state `json:"value"`
			} `json:"result"`
		}
		_ = json.Unmarshal(c.call(att.SessionID, "Runtime.evaluate", map[string]any{
			"expression": `(() => { const v = document.getElementById("v"); const d = document.documentElement.dataset;
				return v ? {state: d.state || "", engine: d.engine || "", hls: typeof window.Hls === "function", width: v.videoWidth, time: v.currentTime}
				         : {state: "", engine: "", hls: false, width: 0, time: 0}; })()`,
			"returnByValue": true,
		}), &r)
		return r.Result.Value
	}
	var first, last state
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		last = read()
		if last.State == "playing" && last.Width > 0 {
			if first.State == "" {
				first = last
			} else if last.Time > first.Time+1 {
				break
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
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

	var shot struct {
		Data string `json:"data"`
	}
	_ = json.Unmarshal(c.call(att.SessionID, "Page.captureScreenshot", map[string]any{"format": "png"}), &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil || len(png) < 1000 {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	path := filepath.Join(t.ArtifactDir(), shotName)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (kept with go test -artifacts -outputdir=DIR)", path)
}
