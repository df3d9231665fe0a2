package rtmpsrv

import (
	"net/url"
	"testing"
)

var nameCases = []struct {
	url, name, query string
	ok               bool
}{
	{"rtmp://h/live/cam1", "live/cam1", "", true},
	{"rtmp://h:1936/live/cam1?token=abc", "live/cam1", "token=abc", true},
	{"rtmp://h/live?token=abc/cam1", "live/cam1", "token=abc", true},
	{"rtmp://h/live?a=1/cam1?b=2", "live/cam1", "a=1&b=2", true},
	{"rtmp://h/a/b/c", "a/b/c", "", true},
	{"rtmp://h/static/demo", "demo", "", true},
	{"rtmp://h/static?t=1/demo", "demo", "t=1", true},
	{"rtmp://h/static/demo?t=2", "demo", "t=2", true},
	{"rtmp://h/static", "", "", false},
	{"rtmp://h/live", "", "", false},
	{"rtmp://h/live/", "", "", false},
	{"rtmp://h//cam1", "", "", false},
	{"rtmp://h/live/..", "", "", false},
	{"rtmp://h/live/a%20b", "", "", false},
}

func TestNameFromURL(t *testing.T) {
	t.Parallel()
	for _, c := range nameCases {
		u, err := url.Parse(c.url)
		if err != nil {
			t.Fatal(err)
		}
		name, q, ok := nameFromURL(u)
		if ok != c.ok || name != c.name || (ok && q != c.query) {
			t.Errorf("%s: got %q %q %v, want %q %q %v", c.url, name, q, ok, c.name, c.query, c.ok)
		}
	}
	if _, _, ok := nameFromURL(nil); ok {
		t.Error("nil URL accepted")
	}
}

func FuzzNameFromURL(f *testing.F) {
	for _, c := range nameCases {
		f.Add(c.url)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		name, _, ok := nameFromURL(u)
		if ok && (name == "" || name[0] == '/' || name[len(name)-1] == '/') {
			t.Fatalf("%q gave bad name %q", s, name)
		}
	})
}
