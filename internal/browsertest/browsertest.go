// Package browsertest drives a real headless Chromium over the DevTools protocol, for tests that check pages the way a viewer meets them.
package browsertest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Chromium is one headless browser talking over --remote-debugging-pipe (fd 3 in, fd 4 out,
// messages ended by NUL). It is killed when the test ends.
type Chromium struct {
	t    *testing.T
	cmd  *exec.Cmd
	in   *os.File
	out  *bufio.Reader
	next int
	errs bytes.Buffer
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Start runs Chromium (Debian's /usr/bin/chromium) with the flags a closed, root sandbox needs.
// A missing browser fails the test with the install command.
func Start(t *testing.T) *Chromium {
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
	c := &Chromium{t: t, in: inW, out: bufio.NewReader(outR)}
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

// Call sends one command (to a page's session, or to the browser with session "") and waits
// for its answer, skipping events.
func (c *Chromium) Call(session, method string, params any) json.RawMessage {
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

// Open loads url in a new tab and returns the tab's session.
func (c *Chromium) Open(url string) string {
	c.t.Helper()
	var target struct {
		TargetID string `json:"targetId"`
	}
	_ = json.Unmarshal(c.Call("", "Target.createTarget", map[string]any{"url": url}), &target)
	var att struct {
		SessionID string `json:"sessionId"`
	}
	_ = json.Unmarshal(c.Call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}), &att)
	return att.SessionID
}

// Eval evaluates a JavaScript expression in the tab and decodes its value into out.
func (c *Chromium) Eval(session, expr string, out any) {
	c.t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
	}
	_ = json.Unmarshal(c.Call(session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}), &r)
	if len(r.Result.Value) > 0 {
		_ = json.Unmarshal(r.Result.Value, out)
	}
}

// Screenshot returns the tab as a PNG.
func (c *Chromium) Screenshot(session string) []byte {
	c.t.Helper()
	var shot struct {
		Data string `json:"data"`
	}
	_ = json.Unmarshal(c.Call(session, "Page.captureScreenshot", map[string]any{"format": "png"}), &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil || len(png) < 1000 {
		c.t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	return png
}

// EmbedState is what the origin's embed.html reports about its video element.
type EmbedState struct {
	State  string  `json:"state"`
	Engine string  `json:"engine"` // native | hlsjs
	Hls    bool    `json:"hls"`    // window.Hls is loaded
	Width  int     `json:"width"`
	Time   float64 `json:"time"`
}

const embedExpr = `(() => { const v = document.getElementById("v"); const d = document.documentElement.dataset;
	return v ? {state: d.state || "", engine: d.engine || "", hls: typeof window.Hls === "function", width: v.videoWidth, time: v.currentTime}
	         : {state: "", engine: "", hls: false, width: 0, time: 0}; })()`

// WatchEmbed polls an embed.html tab until its video has played for more than a second of
// media time (or timeout passes) and returns the first playing state and the last one seen.
func (c *Chromium) WatchEmbed(session string, timeout time.Duration) (first, last EmbedState) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		last = EmbedState{}
		c.Eval(session, embedExpr, &last)
		if last.State == "playing" && last.Width > 0 {
			if first.State == "" {
				first = last
			} else if last.Time > first.Time+1 {
				break
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return first, last
}
