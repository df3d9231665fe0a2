package resolve

import (
	"testing"
)

// FuzzResolve checks, for any name and client, that Resolve does not panic, agrees with
// Explain, and only ever answers with a base URL an origin registered.
func FuzzResolve(f *testing.F) {
	for _, s := range []struct {
		name, client string
		proto        uint8
		secure       bool
	}{
		{"live/cam1", "10.0.0.1", 0, false},
		{"live/cam1", "", 1, true},
		{"vod/film", "token-abc", 2, false},
		{"", "", 0, true},
		{"live/cam1/", "\xff", 7, false},
		{"//evil.com", "x", 0, false},
	} {
		f.Add(s.name, s.client, s.proto, s.secure)
	}
	tb := New(Options{Hysteresis: DefaultHysteresis})
	tb.PutOrigin(org("o1", util(0.2), public("http", "http://o1:8081", "https", "https://o1:8443", "rtsp", "rtsp://o1:8555")))
	tb.PutOrigin(org("o2", util(0.6), public("http", "http://o2:8082", "rtmp", "rtmp://o2:1936")))
	tb.PutOrigin(org("o3", draining))
	tb.PutOrigin(org("o4", public("rtmps", "rtmps://o4:1443")))
	tb.PutStreams("o1", running("live/cam1", "live/cam2"))
	tb.PutStreams("o2", append(running("live/cam1"), ondemand("vod/film")...))
	tb.PutStreams("o3", running("live/cam2", "vod/film"))
	tb.PutStreams("o4", ondemand("vod/film", ""))
	registered := map[string]bool{}
	for _, o := range tb.Origins() {
		for _, u := range o.Origin.Public {
			registered[u] = true
		}
	}
	f.Fuzz(func(t *testing.T, name, client string, proto uint8, secure bool) {
		req := Request{Name: name, Client: client, Proto: Proto(proto), Secure: secure}
		got := tb.Resolve(req)
		ex := tb.Explain(req)
		if got != ex.Result {
			t.Fatalf("Resolve %+v, Explain %+v", got, ex.Result)
		}
		switch got.Outcome {
		case OK:
			if !registered[got.BaseURL] || got.OriginID == "o3" {
				t.Fatalf("answer %+v was never registered as eligible", got)
			}
			if got.Scheme != got.BaseURL[:len(got.Scheme)] {
				t.Fatalf("scheme %q for %q", got.Scheme, got.BaseURL)
			}
		case NotFound, Unavailable:
			if got.BaseURL != "" || got.OriginID != "" {
				t.Fatalf("%+v", got)
			}
		default:
			t.Fatalf("outcome %v", got.Outcome)
		}
		if (got.Outcome == NotFound) != (len(ex.Candidates) == 0) {
			t.Fatalf("%v with %d candidates", got.Outcome, len(ex.Candidates))
		}
	})
}
