package adminapi

import (
	"net/http/httptest"
	"testing"

	"github.com/peergate/peergate/shared/streamname"
)

func FuzzExplainRequest(f *testing.F) {
	for _, q := range []string{
		"name=demo&client=10.0.0.1", "name=demo", "name=live/demo2", "name=nope", "", "name=../x",
		"name=demo&proto=ftp", "name=demo&secure=maybe", "name=demo&proto=rtsp&secure=true", "name=%zz",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		r := httptest.NewRequest("GET", "/api/v1/explain", nil)
		r.URL.RawQuery = rawQuery
		req, msg := explainRequest(r)
		if msg != "" {
			return
		}
		// Whatever passes is a valid name, a known protocol and a bounded client key.
		if !streamname.Valid(req.Name) || req.Proto.String() == "invalid" || len(req.Client) > maxClientLen {
			t.Fatalf("accepted %q as %+v", rawQuery, req)
		}
	})
}

func FuzzTreeName(f *testing.F) {
	for _, q := range []string{"name=demo", "name=live/demo2", "", "name=", "name=../x", "name=%zz", "name=a&name=b"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		r := httptest.NewRequest("GET", "/api/v1/tree", nil)
		r.URL.RawQuery = rawQuery
		name, msg := treeName(r)
		if msg == "" && !streamname.Valid(name) {
			t.Fatalf("accepted %q as %q", rawQuery, name)
		}
	})
}
