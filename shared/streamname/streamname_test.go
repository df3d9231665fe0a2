package streamname

import (
	"net/url"
	"strings"
	"testing"
)

var long10k = "/" + strings.Repeat("a", 10*1024) + "/index.m3u8"

var casesValid = []struct {
	name string
	ok   bool
}{
	{"cam1", true},
	{"live/cam1", true},
	{"a/b/c/d/e/f/g/h", true},
	{"a/b/c/d/e/f/g/h/i", false}, // depth 9
	{"Live_2.cam-1~x", true},
	{"...", true}, // only "." and ".." are dot segments
	{strings.Repeat("a", MaxLen), true},
	{strings.Repeat("a", MaxLen+1), false},
	{"", false},
	{"/cam1", false},
	{"cam1/", false},
	{"live//cam1", false},
	{".", false},
	{"..", false},
	{"live/../cam1", false},
	{"live/./cam1", false},
	{"cam 1", false},
	{"cam%201", false},
	{`live\cam1`, false},
	{"cam1\r\n", false},
	{"cam\x00", false},
	{"user@host", false},
	{"cam1?x=1", false},
	{"cam1#x", false},
	{"käse", false},
	{"a:b", false},
}

func TestValid(t *testing.T) {
	for _, ca := range casesValid {
		if got := Valid(ca.name); got != ca.ok {
			t.Errorf("Valid(%q) = %v, want %v", ca.name, got, ca.ok)
		}
	}
}

var casesHTTP = []struct {
	path string
	name string
	kind Kind // Unknown means rejected
}{
	{"/cam1/index.m3u8", "cam1", HLSMaster},
	{"/live/cam1/index.m3u8", "live/cam1", HLSMaster},
	{"/live/cam1/video_stream.m3u8", "live/cam1", HLSPlaylist},
	{"/live/cam1/tracks-v1.m3u8", "live/cam1", HLSPlaylist},
	{"/live/cam1/main_video_seg12.ts", "live/cam1", HLSSegment},
	{"/live/cam1/seg1.m4s", "live/cam1", HLSSegment},
	{"/live/cam1/main_video_init.mp4", "live/cam1", HLSSegment},
	{"/live/cam1/main_video_part3.mp4", "live/cam1", HLSSegment},
	{"/live/cam1/audio1.aac", "live/cam1", HLSSegment},
	{"/live/cam1/mpegts", "live/cam1", MPEGTS},
	{"/live/cam1/embed.html", "live/cam1", Embed},
	{"/live/cam1/index.mpd", "live/cam1", DASH},
	{"/a/b/c/d/e/f/g/h/index.m3u8", "a/b/c/d/e/f/g/h", HLSMaster},
	{"/" + strings.Repeat("n", MaxLen) + "/" + strings.Repeat("f", MaxFileLen-3) + ".ts", strings.Repeat("n", MaxLen), HLSSegment},
	{"/live/index.m3u8/index.m3u8", "live/index.m3u8", HLSMaster},

	// Not a resource the gateway knows.
	{"/", "", Unknown},
	{"", "", Unknown},
	{"/index.m3u8", "", Unknown},
	{"/cam1", "", Unknown},
	{"/cam1/", "", Unknown},
	{"/cam1/index.M3U8", "", Unknown},
	{"/cam1/.m3u8", "", Unknown},
	{"/cam1/index.m3u8/", "", Unknown},
	{"/cam1/favicon.ico", "", Unknown},
	{"/cam1/mpegts.ts.exe", "", Unknown},
	{"/cam1/" + strings.Repeat("f", MaxFileLen-2) + ".ts", "", Unknown},
	{"/a/b/c/d/e/f/g/h/i/index.m3u8", "", Unknown},
	{"cam1/index.m3u8", "", Unknown},

	// Hostile.
	{"//evil.com/x/index.m3u8", "", Unknown},
	{"//evil.com/index.m3u8", "", Unknown},
	{"/%5Cevil.com/index.m3u8", "", Unknown},
	{"/%5cevil.com/index.m3u8", "", Unknown},
	{`/\evil.com/index.m3u8`, "", Unknown},
	{`/\\evil.com/index.m3u8`, "", Unknown},
	{"/%2F%2Fevil.com/x/index.m3u8", "", Unknown},
	{"/%2f%2fevil.com/index.m3u8", "", Unknown},
	{"/live/cam1%2Findex.m3u8", "", Unknown},
	{"/live/cam1/index%2Em3u8", "", Unknown},
	{"/cam1/index.m3u8\r\nSet-Cookie: x=1", "", Unknown},
	{"/cam1\r\nLocation: http://evil.com/index.m3u8", "", Unknown},
	{"/cam1/%0d%0a.ts", "", Unknown},
	{"/../x/index.m3u8", "", Unknown},
	{"/x/../index.m3u8", "", Unknown},
	{"/a/./index.m3u8", "", Unknown},
	{"/a/../../etc/passwd", "", Unknown},
	{"/cam1/../index.m3u8", "", Unknown},
	{"/cam1/..", "", Unknown},
	{long10k, "", Unknown},
	{"/" + strings.Repeat("a", MaxLen+1) + "/index.m3u8", "", Unknown},
	{"/user@evil.com/index.m3u8", "", Unknown},
	{"/@evil.com/index.m3u8", "", Unknown},
	{"/evil.com:80@x/index.m3u8", "", Unknown},
	{"/cam1/index.m3u8?x=1", "", Unknown},
	{"/cam1/index.m3u8#x", "", Unknown},
	{"/cam 1/index.m3u8", "", Unknown},
	{"/cam1/index.m3u8\x00", "", Unknown},
	{"/c\xc3\xa4m/index.m3u8", "", Unknown},
	{"/http:/evil.com/index.m3u8", "", Unknown},
}

func TestFromHTTPPath(t *testing.T) {
	for _, ca := range casesHTTP {
		name, kind, ok := FromHTTPPath(ca.path)
		if ok != (ca.kind != Unknown) || name != ca.name || kind != ca.kind {
			t.Errorf("FromHTTPPath(%.60q) = %q, %v, %v; want %q, %v", ca.path, name, kind, ok, ca.name, ca.kind)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Unknown: "unknown", HLSMaster: "hls_master", HLSPlaylist: "hls_playlist",
		HLSSegment: "hls_segment", MPEGTS: "mpegts", Embed: "embed", DASH: "dash", Kind(200): "unknown"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

var casesRTSP = []struct {
	path string
	name string
	ok   bool
}{
	{"/cam1", "cam1", true},
	{"/live/cam1", "live/cam1", true},
	{"/live/cam1/", "live/cam1", true},
	{"/live/cam1/trackID=0", "", false}, // SETUP control path
	{"/live/cam1//", "", false},
	{"/", "", false},
	{"", "", false},
	{"cam1", "", false},
	{"//evil.com/cam1", "", false},
	{"/%5Cevil.com", "", false},
	{"/live/../cam1", "", false},
	{"/cam1\r\n", "", false},
	{"/cam1?token=x", "", false}, // the query is not part of the path
	{long10k, "", false},
}

func TestFromRTSPPath(t *testing.T) {
	for _, ca := range casesRTSP {
		name, ok := FromRTSPPath(ca.path)
		if ok != ca.ok || name != ca.name {
			t.Errorf("FromRTSPPath(%.60q) = %q, %v; want %q, %v", ca.path, name, ok, ca.name, ca.ok)
		}
	}
}

var casesRTMP = []struct {
	app, stream string
	name, query string
	ok          bool
}{
	{"live", "cam1", "live/cam1", "", true},
	{"live", "cam1?token=abc&x=1", "live/cam1", "token=abc&x=1", true},
	{"live?key=k", "cam1", "live/cam1", "key=k", true},
	{"live?key=k", "cam1?token=t", "live/cam1", "key=k&token=t", true},
	{"live/sub", "cam1", "live/sub/cam1", "", true},
	{"live", "a/b", "live/a/b", "", true},
	{"live", "cam1?", "live/cam1", "", true},
	{"live", "cam1?a%20b=c%2Fd", "live/cam1", "a%20b=c%2Fd", true},
	{"", "cam1", "", "", false},
	{"live", "", "", "", false},
	{"live", "?token=x", "", "", false},
	{"live/", "cam1", "", "", false},
	{"live", "/cam1", "", "", false},
	{"live", "mp4:cam1", "", "", false},
	{"live", "..", "", "", false},
	{"..", "cam1", "", "", false},
	{"live", "cam1?a b", "", "", false},
	{"live", "cam1?a#b", "", "", false},
	{"live", "cam1?a\r\nb", "", "", false},
	{"live", "cam1\r\n", "", "", false},
	{`live\x`, "cam1", "", "", false},
	{"live", strings.Repeat("a", MaxLen), "", "", false},
	{"live", "cam1?" + strings.Repeat("q", maxQueryLen+1), "", "", false},
	{"a/b/c/d/e/f/g", "h", "a/b/c/d/e/f/g/h", "", true},
	{"a/b/c/d/e/f/g", "h/i", "", "", false},
	{"static", "demo", "demo", "", true},
	{"static?key=k", "demo?t=1", "demo", "key=k&t=1", true},
	{"static", "live/cam1", "live/cam1", "", true},
	{"static", "..", "", "", false},
	{"static", "", "", "", false},
	{"static/x", "demo", "static/x/demo", "", true},
	{"Static", "demo", "Static/demo", "", true},
}

func TestFromRTMP(t *testing.T) {
	for _, ca := range casesRTMP {
		name, query, ok := FromRTMP(ca.app, ca.stream)
		if ok != ca.ok || name != ca.name || query != ca.query {
			t.Errorf("FromRTMP(%q, %.60q) = %q, %q, %v; want %q, %q, %v", ca.app, ca.stream, name, query, ok, ca.name, ca.query, ca.ok)
		}
	}
}

var casesLocation = []struct {
	base, path, query string
	want              string // "" means refused
}{
	{"http://edge1.example.com:8081", "/live/cam1/index.m3u8", "", "http://edge1.example.com:8081/live/cam1/index.m3u8"},
	{"https://edge1.example.com", "/live/cam1/index.m3u8", "token=a%2Bb&exp=1", "https://edge1.example.com/live/cam1/index.m3u8?token=a%2Bb&exp=1"},
	{"https://edge1.example.com/", "/cam1/mpegts", "", "https://edge1.example.com/cam1/mpegts"},
	{"http://127.0.0.1:8081", "/cam1/index.mpd", "a=1", "http://127.0.0.1:8081/cam1/index.mpd?a=1"},
	{"http://[::1]:8081", "/cam1/index.m3u8", "", "http://[::1]:8081/cam1/index.m3u8"},
	{"rtsp://edge1:8555", "/live/cam1", "token=x", "rtsp://edge1:8555/live/cam1?token=x"},
	{"rtsps://edge_1.lan:8322", "/live/cam1", "", "rtsps://edge_1.lan:8322/live/cam1"},
	{"http://h", "/", "", "http://h/"},
	{"http://h", "/a%20b", "", "http://h/a%20b"},
	{"http://h", "/@evil.com", "", "http://h/@evil.com"},
	{"http://h", "/a", "x=%zz", "http://h/a?x=%zz"}, // the query is passed as the client sent it
	{"http://[::ffff:10.0.0.1]:81", "/a", "", "http://[::ffff:10.0.0.1]:81/a"},

	// Bracketed hosts that are not IPv6 literals: net/url refuses them, so must Location.
	{"a://[0]", "/", "", ""}, // FuzzLocation crasher
	{"http://[0]:80", "/a", "", ""},
	{"http://[1.2.3.4]", "/a", "", ""},
	{"http://[::1::]", "/a", "", ""},
	{"http://[:]", "/a", "", ""},
	{"http://[fe80::1%25en0]", "/a", "", ""},

	// Hostile paths.
	{"http://h", "//evil.com/x/index.m3u8", "", ""},
	{"http://h", "//evil.com", "", ""},
	{"http://h", `/\evil.com/index.m3u8`, "", ""},
	{"http://h", `\\evil.com`, "", ""},
	{"http://h", "evil.com/x", "", ""},
	{"http://h", "", "", ""},
	{"http://h", "/a\r\nSet-Cookie: x", "", ""},
	{"http://h", "/a\nb", "", ""},
	{"http://h", "/a\x00", "", ""},
	{"http://h", "/a\x7f", "", ""},
	{"http://h", "/a b", "", ""},
	{"http://h", "/a\tb", "", ""},
	{"http://h", "/k\xc3\xa4se", "", ""},
	{"http://h", "/a?b", "", ""},
	{"http://h", "/a#b", "", ""},
	{"http://h", "/a%", "", ""},
	{"http://h", "/a%4", "", ""},
	{"http://h", "/a%zz", "", ""},

	// Hostile queries.
	{"http://h", "/a", "x=1 2", ""},
	{"http://h", "/a", "x=1\r\nSet-Cookie: y", ""},
	{"http://h", "/a", "x#frag", ""},
	{"http://h", "/a", "x=\x00", ""},
	{"http://h", "/a", "x=\xff", ""},
	{"http://h", "/a", strings.Repeat("q", maxQueryLen+1), ""},

	// Bad bases.
	{"", "/a", "", ""},
	{"http://", "/a", "", ""},
	{"http:/h", "/a", "", ""},
	{"HTTP://h", "/a", "", ""},
	{"1http://h", "/a", "", ""},
	{"http://u@h", "/a", "", ""},
	{"http://h/p", "/a", "", ""},
	{"http://h?x", "/a", "", ""},
	{"http://h#x", "/a", "", ""},
	{"http://h:", "/a", "", ""},
	{"http://h:123456", "/a", "", ""},
	{"http://h:8a", "/a", "", ""},
	{"http://[::1", "/a", "", ""},
	{"http://[]", "/a", "", ""},
	{"http://[fe80::1%25eth0]", "/a", "", ""},
	{"http://h\r\n", "/a", "", ""},
	{`http://h\`, "/a", "", ""},
	{"http://h//", "/a", "", ""},
}

func TestLocation(t *testing.T) {
	for _, ca := range casesLocation {
		got, ok := Location(ca.base, ca.path, ca.query)
		if ok != (ca.want != "") || got != ca.want {
			t.Errorf("Location(%q, %q, %.40q) = %q, %v; want %q", ca.base, ca.path, ca.query, got, ok, ca.want)
		}
	}
}

func TestLocationAllocs(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		if _, ok := Location("https://edge1.example.com:8443", "/live/cam1/index.m3u8", "token=abc"); !ok {
			t.Fatal("refused")
		}
	})
	if n != 1 {
		t.Fatalf("Location allocates %v times, want 1", n)
	}
}

func TestFromHTTPPathAllocs(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		if _, _, ok := FromHTTPPath("/live/cam1/index.m3u8"); !ok {
			t.Fatal("refused")
		}
	})
	if n != 0 {
		t.Fatalf("FromHTTPPath allocates %v times, want 0", n)
	}
}

// Every HTTP path the parser accepts must give a Location on the same host.
func TestHTTPPathsStayOnBase(t *testing.T) {
	for _, ca := range casesHTTP {
		if _, _, ok := FromHTTPPath(ca.path); !ok {
			continue
		}
		checkSameHost(t, "https://origin.example:8443", ca.path, "t=1")
	}
}

func checkSameHost(t *testing.T, base, path, query string) {
	t.Helper()
	loc, ok := Location(base, path, query)
	if !ok {
		return
	}
	b, err := url.Parse(base)
	if err != nil {
		t.Fatalf("Location accepted base %q that net/url refuses: %v", base, err)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("Location(%q, %q, %q) = %q, which net/url refuses: %v", base, path, query, loc, err)
	}
	if u.Scheme != b.Scheme || u.Host != b.Host || u.User != nil || u.Opaque != "" || u.Fragment != "" {
		t.Fatalf("Location(%q, %q, %q) = %q: scheme %q host %q, want %q %q", base, path, query, loc, u.Scheme, u.Host, b.Scheme, b.Host)
	}
}

func BenchmarkFromHTTPPath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := FromHTTPPath("/live/cam1/index.m3u8"); !ok {
			b.Fatal("refused")
		}
	}
}

func BenchmarkLocation(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := Location("https://edge1.example.com:8443", "/live/cam1/index.m3u8", "token=abc123&exp=1700000000"); !ok {
			b.Fatal("refused")
		}
	}
}
