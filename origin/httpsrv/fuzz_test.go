package httpsrv

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/peergate/peergate/origin/media"
)

// FuzzRequestPath: any request path gets an answer with CORS, never a panic, and only a
// NAME the table carries can get anything but 404/405.
func FuzzRequestPath(f *testing.F) {
	for _, c := range pathCases {
		f.Add("GET", c.path)
	}
	f.Add("OPTIONS", "/a/index.m3u8")
	f.Add("DELETE", "/a/mpegts")
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s := &Server{Address: "127.0.0.1:0", Table: tbl, Logger: testLogger(f)}
	if err := s.Initialize(); err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	h := s.srv.Handler
	f.Fuzz(func(t *testing.T, method, path string) {
		req, err := http.NewRequest(method, "http://x", nil)
		if err != nil {
			return
		}
		req.URL.RawPath, req.URL.Path = path, path
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNoContent:
		default:
			t.Fatalf("%s %q = %d on an empty table", method, path, rec.Code)
		}
		if rec.Header().Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s %q: no CORS header", method, path)
		}
	})
}
