// Package streamname holds the stream-name and URL rules shared by the gateway and the origin.
package streamname

import "strings"

// Limits on a stream NAME.
const (
	// MaxLen is the longest NAME in bytes.
	MaxLen = 255
	// MaxDepth is the largest number of slash-separated segments in a NAME.
	MaxDepth = 8
	// MaxFileLen is the longest last element (file name) of an HTTP path.
	MaxFileLen = 128

	// maxHTTPPathLen bounds the whole escaped path "/" NAME "/" FILE.
	maxHTTPPathLen = 1 + MaxLen + 1 + MaxFileLen
)

// Kind is the kind of resource an HTTP path asks for.
type Kind uint8

// Kinds of HTTP resources (design.md section 2).
const (
	Unknown     Kind = iota
	HLSMaster        // /NAME/index.m3u8
	HLSPlaylist      // any other /NAME/*.m3u8
	HLSSegment       // /NAME/*.ts, *.m4s, *.mp4 (fMP4 init, segments, LL-HLS parts), *.aac (packed audio)
	MPEGTS           // /NAME/mpegts
	Embed            // /NAME/embed.html
	DASH             // /NAME/index.mpd
)

var kindNames = [...]string{
	Unknown:     "unknown",
	HLSMaster:   "hls_master",
	HLSPlaylist: "hls_playlist",
	HLSSegment:  "hls_segment",
	MPEGTS:      "mpegts",
	Embed:       "embed",
	DASH:        "dash",
}

// String returns a short lower-case name, usable as a metric label.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// safe marks the bytes allowed in a NAME segment and a file name: [A-Za-z0-9._~-].
var safe = func() (t [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "._~-" {
		t[c] = true
	}
	return t
}()

// Valid reports whether name is a stream NAME: 1 to MaxDepth segments of [A-Za-z0-9._~-]
// joined by single slashes, no segment "." or "..", at most MaxLen bytes.
func Valid(name string) bool {
	if len(name) == 0 || len(name) > MaxLen {
		return false
	}
	depth, start := 1, 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '/' {
			if !safe[name[i]] {
				return false
			}
			continue
		}
		if !validSegment(name[start:i]) {
			return false
		}
		if i < len(name) {
			depth++
			if depth > MaxDepth {
				return false
			}
		}
		start = i + 1
	}
	return true
}

// validSegment checks the length and the dot rules; the caller has checked the bytes.
func validSegment(s string) bool {
	return s != "" && s != "." && s != ".."
}

// fileKind classifies the last element of an HTTP path; Unknown if it is not a safe token
// or not a resource the gateway redirects.
func fileKind(file string) Kind {
	if len(file) == 0 || len(file) > MaxFileLen || !validSegment(file) {
		return Unknown
	}
	for i := 0; i < len(file); i++ {
		if !safe[file[i]] {
			return Unknown
		}
	}
	switch file {
	case "index.m3u8":
		return HLSMaster
	case "mpegts":
		return MPEGTS
	case "embed.html":
		return Embed
	case "index.mpd":
		return DASH
	}
	// A bare extension (".m3u8") has no stem: treat it as a hidden file, not a resource.
	dot := strings.LastIndexByte(file, '.')
	if dot <= 0 {
		return Unknown
	}
	switch file[dot:] {
	case ".m3u8":
		return HLSPlaylist
	case ".ts", ".m4s", ".mp4", ".aac":
		return HLSSegment
	}
	return Unknown
}

// FromHTTPPath splits an escaped (raw, as received) request path "/NAME/FILE" into NAME and
// the kind of FILE. The NAME is everything between the leading slash and the last slash, so
// deeper sub-resources are left to the origin after the redirect. Percent-escapes, empty
// segments ("//"), dot segments, backslashes, control characters and anything longer than
// a NAME plus a file name are rejected: the gateway then never has to decide what they mean.
func FromHTTPPath(escapedPath string) (name string, kind Kind, ok bool) {
	p := escapedPath
	if len(p) < 2 || len(p) > maxHTTPPathLen || p[0] != '/' {
		return "", Unknown, false
	}
	i := strings.LastIndexByte(p, '/')
	if i == 0 {
		return "", Unknown, false
	}
	kind = fileKind(p[i+1:])
	if kind == Unknown || !Valid(p[1:i]) {
		return "", Unknown, false
	}
	return p[1:i], kind, true
}

// FromRTSPPath returns the NAME of an rtsp:// URL path ("/NAME", one trailing slash allowed,
// no query). Only OPTIONS and DESCRIBE paths name a stream: the "/trackID=0"-style control
// paths that clients append on SETUP are rejected, which is what a redirecting gateway wants.
func FromRTSPPath(path string) (name string, ok bool) {
	if len(path) < 2 || path[0] != '/' {
		return "", false
	}
	name = path[1:]
	if name[len(name)-1] == '/' {
		name = name[:len(name)-1]
	}
	if !Valid(name) {
		return "", false
	}
	return name, true
}

// StaticApp is the RTMP app through which a single-segment NAME is reached:
// rtmp://host/static/demo is NAME "demo" (Flussonic's rule, on origins and gateways alike).
const StaticApp = "static"

// FromRTMP builds the NAME "APP/STREAM" from an RTMP connect app and play/publish stream
// name; the app "static" yields the bare STREAM (rtmp://host/static/demo is "demo"). Either may carry a "?query" (publishers often put a token on the app, players on the
// stream); it is split off and returned, the app's first, joined by "&" when both have one.
func FromRTMP(app, stream string) (name, query string, ok bool) {
	app, aq, _ := strings.Cut(app, "?")
	stream, sq, _ := strings.Cut(stream, "?")
	switch {
	case aq == "":
		query = sq
	case sq == "":
		query = aq
	default:
		if len(aq)+1+len(sq) > maxQueryLen {
			return "", "", false
		}
		query = aq + "&" + sq
	}
	if app == "" || stream == "" || len(app)+1+len(stream) > MaxLen || !ValidQuery(query) {
		return "", "", false
	}
	// Check the parts before joining so hostile input costs no allocation.
	if !Valid(app) || !Valid(stream) {
		return "", "", false
	}
	if app == StaticApp {
		return stream, query, true
	}
	name = app + "/" + stream
	if !Valid(name) {
		return "", "", false
	}
	return name, query, true
}
