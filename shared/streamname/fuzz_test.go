package streamname

import (
	"strings"
	"testing"
)

func FuzzFromHTTPPath(f *testing.F) {
	for _, ca := range casesHTTP {
		f.Add(ca.path)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, kind, ok := FromHTTPPath(p)
		if !ok {
			if name != "" || kind != Unknown {
				t.Fatalf("rejected %q but returned %q, %v", p, name, kind)
			}
			return
		}
		if kind == Unknown || !Valid(name) || !strings.HasPrefix(p, "/"+name+"/") {
			t.Fatalf("FromHTTPPath(%q) = %q, %v", p, name, kind)
		}
		if strings.ContainsAny(p, "%\\?#\r\n@:") || strings.Contains(p, "//") || strings.Contains(p, "/./") || strings.Contains(p, "/../") {
			t.Fatalf("FromHTTPPath accepted hostile %q", p)
		}
		if _, ok := Location("https://origin.example:8443", p, ""); !ok {
			t.Fatalf("Location refused accepted path %q", p)
		}
		checkSameHost(t, "https://origin.example:8443", p, "")
		if n, ok := FromRTSPPath("/" + name); !ok || n != name {
			t.Fatalf("FromRTSPPath(/%s) = %q, %v", name, n, ok)
		}
	})
}

func FuzzLocation(f *testing.F) {
	for _, ca := range casesLocation {
		f.Add(ca.base, ca.path, ca.query)
	}
	for _, ca := range casesHTTP {
		f.Add("http://origin:8081", ca.path, "token=x")
	}
	f.Fuzz(func(t *testing.T, base, path, query string) {
		loc, ok := Location(base, path, query)
		if !ok {
			return
		}
		if !strings.HasSuffix(loc, path+"?"+query) && !(query == "" && strings.HasSuffix(loc, path)) {
			t.Fatalf("Location(%q, %q, %q) = %q lost path or query", base, path, query, loc)
		}
		checkSameHost(t, base, path, query)
	})
}

func FuzzFromRTSPPath(f *testing.F) {
	for _, ca := range casesRTSP {
		f.Add(ca.path)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, ok := FromRTSPPath(p)
		if !ok {
			return
		}
		if !Valid(name) || (p != "/"+name && p != "/"+name+"/") {
			t.Fatalf("FromRTSPPath(%q) = %q", p, name)
		}
		checkSameHost(t, "rtsp://origin:8555", "/"+name, "")
	})
}

func FuzzFromRTMP(f *testing.F) {
	for _, ca := range casesRTMP {
		f.Add(ca.app, ca.stream)
	}
	f.Fuzz(func(t *testing.T, app, stream string) {
		name, query, ok := FromRTMP(app, stream)
		if !ok {
			if name != "" || query != "" {
				t.Fatalf("rejected (%q, %q) but returned %q, %q", app, stream, name, query)
			}
			return
		}
		if !Valid(name) || !ValidQuery(query) || strings.Contains(name, "?") {
			t.Fatalf("FromRTMP(%q, %q) = %q, %q", app, stream, name, query)
		}
		if bare := strings.SplitN(app, "?", 2)[0]; bare == StaticApp {
			if name != strings.SplitN(stream, "?", 2)[0] {
				t.Fatalf("FromRTMP(%q, %q) = %q, want the bare stream", app, stream, name)
			}
		} else if !strings.HasPrefix(name, bare+"/") {
			t.Fatalf("FromRTMP(%q, %q) = %q does not start with the app", app, stream, name)
		}
		if _, ok := Location("rtmp://origin:1936", "/"+name, query); !ok {
			t.Fatalf("Location refused RTMP name %q query %q", name, query)
		}
		checkSameHost(t, "rtmp://origin:1936", "/"+name, query)
	})
}
