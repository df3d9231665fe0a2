package httpsrv

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	_ "embed"
	"encoding/base64"
	"html/template"
	"net/http"
	"time"
)

// hlsJS is hls.js 1.5.20 (dist/hls.min.js from the npm package, Apache-2.0, see
// assets/hls.js.LICENSE). embed.html loads it only where the browser has no native HLS.
//
//go:embed assets/hls.min.js
var hlsJS []byte

// HLSJSPath serves hlsJS. It cannot collide with a stream route: every stream URL ends in
// one of the file names shared/streamname classifies (index.m3u8, *.ts, embed.html, ...),
// and "hls.min.js" is none of them (TestHLSJSRoute checks FromHTTPPath rejects the path).
const HLSJSPath = "/_peergate/hls.min.js"

// hlsJSIntegrity is the script's Subresource Integrity value, checked by the browser.
var hlsJSIntegrity = func() string {
	sum := sha512.Sum384(hlsJS)
	return "sha384-" + base64.StdEncoding.EncodeToString(sum[:])
}()

// hlsJSETag is a strong validator for hlsJS.
var hlsJSETag = func() string {
	sum := sha256.Sum256(hlsJS)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
}()

// embedScript reflects the player state into <html data-state=... data-width=...> (for
// monitoring and tests) and retries while the stream is still starting. It plays native
// HLS where the browser has it, otherwise (or with ?hlsjs=1 in the page URL) it loads
// hls.js from the origin and plays through Media Source Extensions. data-engine says which.
const embedScript = `
const v = document.getElementById("v");
const root = document.documentElement;
const src = v.dataset.src;
function mark(state) {
  root.dataset.state = state;
  root.dataset.width = String(v.videoWidth);
  root.dataset.height = String(v.videoHeight);
  root.dataset.time = String(v.currentTime);
}
function fail(text) {
  document.getElementById("msg").textContent = text;
  mark("unsupported");
}
v.addEventListener("playing", () => mark("playing"));
v.addEventListener("timeupdate", () => { if (v.currentTime > 0 && !v.paused) mark("playing"); });
v.addEventListener("waiting", () => mark("waiting"));
function native() {
  root.dataset.engine = "native";
  v.addEventListener("error", () => {
    mark("error");
    setTimeout(() => { v.load(); v.play().catch(() => {}); }, 2000);
  });
  v.src = src;
  v.play().catch(() => {});
}
function hlsjs() {
  root.dataset.engine = "hlsjs";
  const s = document.createElement("script");
  s.src = v.dataset.hlsjs;
  s.integrity = v.dataset.hlsjsIntegrity;
  s.crossOrigin = "anonymous";
  s.onerror = () => fail("Could not load the HLS player.");
  s.onload = () => {
    if (!window.Hls || !Hls.isSupported()) { fail("This browser cannot play HLS."); return; }
    const hls = new Hls({ liveDurationInfinity: true });
    hls.on(Hls.Events.ERROR, (_, d) => {
      if (!d.fatal) return;
      mark("error");
      if (d.type === Hls.ErrorTypes.MEDIA_ERROR) { hls.recoverMediaError(); return; }
      setTimeout(() => hls.loadSource(src), 2000);
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => v.play().catch(() => {}));
    hls.loadSource(src);
    hls.attachMedia(v);
  };
  document.head.appendChild(s);
}
const forced = new URLSearchParams(location.search).get("hlsjs") === "1";
if (!forced && v.canPlayType("application/vnd.apple.mpegurl")) native();
else if (window.MediaSource || window.ManagedMediaSource) hlsjs();
else fail("This browser cannot play HLS.");
`

// embedCSP allows nothing but this page's own script, hls.js from this origin (plus the
// blob: worker it starts), and same-origin media.
var embedCSP = func() string {
	sum := sha256.Sum256([]byte(embedScript))
	return "default-src 'none'; media-src 'self' blob:; connect-src 'self'; style-src 'unsafe-inline'; " +
		"worker-src blob:; script-src 'self' 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

var embedTmpl = template.Must(template.New("embed").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Name}}</title>
<style>html,body{margin:0;height:100%;background:#000}video{width:100%;height:100%;object-fit:contain}#msg{position:absolute;top:0;left:0;color:#fff;font:14px sans-serif;margin:8px}</style>
</head>
<body>
<video id="v" data-src="{{.Src}}" data-hlsjs="{{.HLSJS}}" data-hlsjs-integrity="{{.Integrity}}" muted autoplay playsinline controls></video>
<div id="msg"></div>
<script>{{.Script}}</script>
</body>
</html>
`))

// serveEmbed answers a self-contained player page for a live (or on-demand) stream.
func (s *Server) serveEmbed(w http.ResponseWriter, r *http.Request, name string) {
	if st := s.findStream(w, r, name); st == nil {
		return
	}
	src := "index.m3u8"
	if r.URL.RawQuery != "" {
		// Tokens in the page URL go on to the playlist.
		src += "?" + r.URL.RawQuery
	}
	var buf bytes.Buffer
	err := embedTmpl.Execute(&buf, struct {
		Name      string
		Src       string
		HLSJS     string
		Integrity string
		Script    template.JS
	}{name, src, HLSJSPath, hlsJSIntegrity, template.JS(embedScript)})
	if err != nil {
		http.Error(w, "template", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Security-Policy", embedCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(buf.Bytes())
}

// serveHLSJS answers the embedded hls.js; its content only changes with the binary, so
// browsers may keep it for a year (the ETag covers a new build).
func serveHLSJS(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("ETag", hlsJSETag)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(hlsJS))
}
