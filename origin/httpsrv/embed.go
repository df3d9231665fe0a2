package httpsrv

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
)

// embedScript reflects the player state into <html data-state=... data-width=...> (for
// monitoring and tests) and retries while the stream is still starting.
const embedScript = `
const v = document.getElementById("v");
const root = document.documentElement;
function mark(state) {
  root.dataset.state = state;
  root.dataset.width = String(v.videoWidth);
  root.dataset.height = String(v.videoHeight);
  root.dataset.time = String(v.currentTime);
}
if (!v.canPlayType("application/vnd.apple.mpegurl")) {
  document.getElementById("msg").textContent = "This browser cannot play HLS natively.";
  mark("unsupported");
}
v.addEventListener("playing", () => mark("playing"));
v.addEventListener("timeupdate", () => { if (v.currentTime > 0 && !v.paused) mark("playing"); });
v.addEventListener("waiting", () => mark("waiting"));
v.addEventListener("error", () => {
  mark("error");
  setTimeout(() => { v.load(); v.play().catch(() => {}); }, 2000);
});
v.play().catch(() => {});
`

// embedCSP allows nothing but this page's own script and same-origin media.
var embedCSP = func() string {
	sum := sha256.Sum256([]byte(embedScript))
	return "default-src 'none'; media-src 'self' blob:; connect-src 'self'; style-src 'unsafe-inline'; " +
		"script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
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
<video id="v" src="{{.Src}}" muted autoplay playsinline controls></video>
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
		Name   string
		Src    template.URL
		Script template.JS
	}{name, template.URL(src), template.JS(embedScript)})
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
