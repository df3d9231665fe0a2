package adminapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
)

// consoleHTML is the cluster console: one page, inline CSS and JS, no external asset. It polls
// /api/v1/origins and /api/v1/streams every 2 seconds and calls /api/v1/explain; it is read-only.
// Play links point at the gateway's public HTTP listener: the page's ?http=PORT (same host) or
// ?http=http(s)://host[:port] override, else this host on port 8080 (listen.http's default).
//
//go:embed console.html
var consoleHTML []byte

// consoleCSP admits only the page's own inline script (by hash) and same-origin API calls.
var consoleCSP = func() string {
	start := bytes.Index(consoleHTML, []byte("<script>"))
	end := bytes.LastIndex(consoleHTML, []byte("</script>"))
	if start < 0 || end < start {
		panic("adminapi: console.html has no inline script")
	}
	sum := sha256.Sum256(consoleHTML[start+len("<script>") : end])
	return "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'none'; " +
		"frame-ancestors 'none'; base-uri 'none'; script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

// serveConsole answers the console page at the admin listener's root.
func serveConsole(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Security-Policy", consoleCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	_, _ = w.Write(consoleHTML)
}
