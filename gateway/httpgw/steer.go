package httpgw

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/streamname"
)

// HLS content steering (README, "HLS content steering"): with Server.Steering set, the HLS
// entry /NAME/index.m3u8 is answered 200 with a multivariant playlist listing NAME's media
// playlist once per copy (one pathway per origin, its id the origin id), the first being
// the origin the redirect would have named, and an EXT-X-CONTENT-STEERING tag pointing at
// SteeringPath on this gateway, which answers the pathway priority for the viewer from
// the table at request time.

// SteeringPath is the gateway's steering endpoint. Its last segment has no extension
// shared/streamname classifies, so it is never a stream URL; the stream is named in the
// query (stream=NAME, percent-encoded), followed by the viewer's query as sent.
const SteeringPath = "/_peergate/steering"

// Defaults of the steering settings.
const (
	DefaultSteeringTTL = 5 * time.Second
	// DefaultSteeringBandwidth is the BANDWIDTH of a variant whose origin announced no bitrate.
	DefaultSteeringBandwidth = 2_000_000
	// SteeringMediaPlaylist is the media playlist an origin serves for NAME beside
	// index.m3u8 with its default HLS variant (MPEG-TS: gohlslib's "main" stream).
	SteeringMediaPlaylist = "main_stream.m3u8"
)

// Copier lists the copies of a stream for a viewer, the origin Resolve would answer first;
// *resolve.Table implements it.
type Copier interface {
	Copies(req resolve.Request, dst []resolve.Copy) ([]resolve.Copy, resolve.Outcome)
}

var _ Copier = (*resolve.Table)(nil)

// copyBufs lends Copies its destination: a slice passed through an interface escapes, so a
// stack array would cost an allocation per answer.
var copyBufs = sync.Pool{New: func() any { b := make([]resolve.Copy, 0, maxCopies); return &b }}

const (
	contentM3U8    = "application/vnd.apple.mpegurl"
	contentJSON    = "application/json"
	maxSteerQuery  = 8192 + 512 // a viewer query (streamname's bound) plus stream= and the _HLS_ parameters
	maxCopies      = 16         // pathways offered; more copies are not listed
	pathwayParam   = "_HLS_pathway"
	throughputParm = "_HLS_throughput"
	streamParam    = "stream"
)

// steerQuery is a parsed steering request query.
type steerQuery struct {
	name    string // the stream, decoded and valid
	pathway string // the player's current pathway ("" when not sent)
	viewer  string // the viewer's own parameters, raw, in order: what the playlist URIs carry
}

// parseSteerQuery reads stream=NAME (the first one; percent-decoded), _HLS_pathway (a
// pathway id) and _HLS_throughput (digits) and keeps every other pair, raw and in order,
// as the viewer's query. It refuses a query a Location must not carry, a missing or
// invalid NAME, a malformed pathway or throughput, and more than maxSteerQuery bytes.
func parseSteerQuery(raw string) (q steerQuery, ok bool) {
	if len(raw) > maxSteerQuery {
		return steerQuery{}, false
	}
	// The viewer's pairs are usually one run of the query (stream= first, the _HLS_ pairs
	// last): then the viewer query is a substring of it, and only a query with them
	// interleaved is copied.
	var viewer strings.Builder
	vFrom, vTo, copied := -1, -1, false
	seen := false
	for off := 0; off < len(raw); {
		end := strings.IndexByte(raw[off:], '&')
		if end < 0 {
			end = len(raw)
		} else {
			end += off
		}
		pair := raw[off:end]
		pairAt := off
		off = end + 1
		k, v, _ := strings.Cut(pair, "=")
		switch {
		case k == streamParam && !seen:
			name, ok := unescape(v)
			if !ok || !streamname.Valid(name) {
				return steerQuery{}, false
			}
			q.name, seen = name, true
			continue
		case k == pathwayParam:
			if !validPathway(v) {
				return steerQuery{}, false
			}
			q.pathway = v
			continue
		case k == throughputParm:
			if v == "" || len(v) > 20 || strings.Trim(v, "0123456789") != "" {
				return steerQuery{}, false
			}
			continue
		case pair == "":
			continue
		}
		switch {
		case vFrom < 0:
			vFrom, vTo = pairAt, end
		case !copied && pairAt == vTo+1:
			vTo = end
		default:
			if !copied {
				viewer.WriteString(raw[vFrom:vTo])
				copied = true
			}
			viewer.WriteByte('&')
			viewer.WriteString(pair)
		}
	}
	switch {
	case copied:
		q.viewer = viewer.String()
	case vFrom >= 0:
		q.viewer = raw[vFrom:vTo]
	}
	if !seen || !streamname.ValidQuery(q.viewer) {
		return steerQuery{}, false
	}
	return q, true
}

// unescape percent-decodes s (no '+' for space: stream names have no space).
func unescape(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "", false
			}
			c = unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
		}
		b = append(b, c)
	}
	return string(b), true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// validPathway accepts a pathway id as RFC 8216bis allows it: [a-zA-Z0-9.-_], 1..64 bytes.
// Origin ids (cluster.ValidID) are pathway ids as they are.
func validPathway(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// steeringURI is the steering endpoint's URI for NAME and the viewer's query, relative to
// the gateway (players resolve it against the multivariant playlist's URL). A '"' of the
// query is escaped: the URI sits in a quoted string.
func steeringURI(name, viewer string) string {
	return string(appendSteeringURI(nil, name, viewer, false))
}

// appendSteeringURI appends steeringURI(name, viewer), escaped for a JSON string when json.
func appendSteeringURI(b []byte, name, viewer string, json bool) []byte {
	b = append(b, SteeringPath+"?"+streamParam+"="...)
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			b = append(b, "%2F"...)
		} else {
			b = append(b, name[i])
		}
	}
	if viewer == "" {
		return b
	}
	b = append(b, '&')
	for i := 0; i < len(viewer); i++ {
		switch c := viewer[i]; {
		case c == '"':
			b = append(b, "%22"...)
		case c == '\\' && json:
			b = append(b, '\\', '\\')
		default:
			b = append(b, c) // printable ASCII: streamname.ValidQuery holds
		}
	}
	return b
}

// tsCodecs reports whether codecs (the registry's CODECS string, "" when unknown) describe
// a stream the origin serves as MPEG-TS HLS (H.264 and AAC), whose media playlist is
// SteeringMediaPlaylist. Others (H.265, Opus, AV1...) are served as fMP4 with other playlist
// names, and get the redirect.
func tsCodecs(codecs string) bool {
	for c := range strings.SplitSeq(codecs, ",") {
		if c != "" && !strings.HasPrefix(c, "avc1.") && !strings.HasPrefix(c, "avc3.") && !strings.HasPrefix(c, "mp4a.") {
			return false
		}
	}
	return true
}

// validCodecs accepts a CODECS value safe in a quoted string: letters, digits, '.', ',', '-', '_'.
func validCodecs(s string) bool {
	if len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == ',' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// multivariant answers an HLS entry with the copies of name as pathways; first is how
// Copies answered. ok is false when the redirect should answer instead (the stream's codecs
// ask for another playlist layout).
func (h *handler) multivariant(r *request, name, key string, secure bool) (a answer, origin string, handled bool) {
	buf := copyBufs.Get().(*[]resolve.Copy)
	defer copyBufs.Put(buf)
	t0 := time.Now()
	copies, oc := h.steer.Copies(resolve.Request{Name: name, Proto: resolve.ProtoHTTP, Secure: secure, Client: key, Arrival: true}, (*buf)[:0])
	*buf = copies[:0]
	h.count.resolve(time.Since(t0))
	switch oc {
	case resolve.OK:
	case resolve.NotFound:
		return answer{status: http.StatusNotFound, oc: oNotFound}, "", true
	case resolve.Unavailable:
		return answer{status: http.StatusServiceUnavailable, oc: oUnavailable}, "", true
	default:
		return answer{status: http.StatusInternalServerError, oc: oError}, "", true
	}
	// What the copies announced, the first copy's first: every pathway describes its variant
	// alike, borrowing what its own origin did not announce (a relay often announces less).
	var known cluster.StreamMeta
	for i := range copies {
		known = fillMeta(known, copies[i].Meta)
	}
	if !tsCodecs(known.Codecs) {
		return answer{}, "", false
	}
	first := copies[0].OriginID
	var b strings.Builder
	b.Grow(256 + 256*min(len(copies), maxCopies))
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	b.WriteString(`#EXT-X-CONTENT-STEERING:SERVER-URI="`)
	b.WriteString(steeringURI(name, r.query))
	b.WriteString(`",PATHWAY-ID="`)
	b.WriteString(first)
	b.WriteString("\"\n")
	listed := 0
	path := "/" + name + "/" + SteeringMediaPlaylist
	for i := range copies {
		c := &copies[i]
		if listed == maxCopies {
			break
		}
		if i > 0 && (c.Full || c.Draining) {
			// A new viewer gets only copies that can take it: players that probe every
			// variant (ffmpeg) would otherwise open a session on a full or draining origin.
			// The steering answers still list them for the viewers already there.
			continue
		}
		loc, ok := streamname.Location(c.BaseURL, path, r.query)
		if !ok || !validPathway(c.OriginID) || (i > 0 && !tsCodecs(c.Meta.Codecs)) {
			if i == 0 {
				return answer{status: http.StatusBadGateway, oc: oBadOrigin}, first, true
			}
			continue
		}
		writeStreamInf(&b, fillMeta(c.Meta, known))
		b.WriteString(`,PATHWAY-ID="`)
		b.WriteString(c.OriginID)
		b.WriteString("\"\n")
		b.WriteString(loc)
		b.WriteByte('\n')
		listed++
	}
	return answer{status: http.StatusOK, oc: oMultivariant, body: []byte(b.String()), route: copies[0].Route}, first, true
}

// fillMeta returns m with what it lacks taken from from.
func fillMeta(m, from cluster.StreamMeta) cluster.StreamMeta {
	if m.BitrateBps <= 0 {
		m.BitrateBps = from.BitrateBps
	}
	if m.Codecs == "" {
		m.Codecs = from.Codecs
	}
	if m.Width <= 0 || m.Height <= 0 {
		m.Width, m.Height = from.Width, from.Height
	}
	return m
}

// writeStreamInf writes an EXT-X-STREAM-INF tag for m without its line end.
func writeStreamInf(b *strings.Builder, m cluster.StreamMeta) {
	bw := m.BitrateBps
	if bw <= 0 || bw > 1<<40 {
		bw = DefaultSteeringBandwidth
	}
	b.WriteString("#EXT-X-STREAM-INF:BANDWIDTH=")
	b.WriteString(strconv.FormatInt(bw, 10))
	if m.Codecs != "" && validCodecs(m.Codecs) {
		b.WriteString(`,CODECS="`)
		b.WriteString(m.Codecs)
		b.WriteByte('"')
	}
	if m.Width > 0 && m.Height > 0 && m.Width < 1<<16 && m.Height < 1<<16 {
		b.WriteString(",RESOLUTION=")
		b.WriteString(strconv.Itoa(m.Width))
		b.WriteByte('x')
		b.WriteString(strconv.Itoa(m.Height))
	}
}

// steering answers the steering endpoint: the pathway priority for this viewer now, with
// clones (URI-REPLACEMENT HOST) of the player's current pathway for copies that appeared
// since it loaded the multivariant playlist (players skip clones of pathways they have).
func (h *handler) steering(r *request) (a answer, client string, sticky bool, origin string) {
	q, ok := parseSteerQuery(r.query)
	if !ok {
		return answer{status: http.StatusBadRequest, oc: oBadQuery}, "", false, ""
	}
	client, key, sticky, secure, allowed := h.viewer(r, q.name, q.viewer)
	if !allowed {
		return answer{status: http.StatusForbidden, oc: oUnauthorized}, client, sticky, ""
	}
	buf := copyBufs.Get().(*[]resolve.Copy)
	defer copyBufs.Put(buf)
	t0 := time.Now()
	// Not an arrival: the player already plays one of the copies; its load is in the heartbeats.
	copies, oc := h.steer.Copies(resolve.Request{Name: q.name, Proto: resolve.ProtoHTTP, Secure: secure, Client: key}, (*buf)[:0])
	*buf = copies[:0]
	h.count.resolve(time.Since(t0))
	if oc == resolve.NotFound || len(copies) == 0 {
		if oc == resolve.Unavailable {
			return answer{status: http.StatusServiceUnavailable, oc: oUnavailable}, client, sticky, ""
		}
		return answer{status: http.StatusNotFound, oc: oNotFound}, client, sticky, ""
	}
	// The player's pathway, when it is still a copy, lends its scheme to the clones; and
	// while it can take viewers (not draining, not full, not filled to spill_at) it stays
	// first: a player moves when its copy fills up, drains or dies, not whenever the
	// redirect's choice between two comfortable copies turns with their load.
	baseScheme := ""
	for i := range copies {
		c := &copies[i]
		if c.OriginID != q.pathway {
			continue
		}
		baseScheme = c.Scheme
		if i > 0 && !c.Full && !c.Draining && !c.Crowded {
			keep := *c
			copy(copies[1:i+1], copies[:i])
			copies[0] = keep
		}
		break
	}
	b := make([]byte, 0, 192+96*len(copies))
	b = append(b, `{"VERSION":1,"TTL":`...)
	b = strconv.AppendInt(b, h.steerTTL, 10)
	b = append(b, `,"RELOAD-URI":"`...)
	b = appendSteeringURI(b, q.name, q.viewer, true)
	b = append(b, `","PATHWAY-PRIORITY":[`...)
	n := 0
	for i := range copies {
		c := &copies[i]
		if n == maxCopies || !validPathway(c.OriginID) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, c.OriginID...)
		b = append(b, '"')
		n++
	}
	b = append(b, ']')
	if baseScheme != "" {
		nc := 0
		for i := range copies {
			c := &copies[i]
			host, ok := hostOf(c.BaseURL, baseScheme)
			if c.OriginID == q.pathway || !ok || !validPathway(c.OriginID) || i >= maxCopies {
				continue
			}
			if nc == 0 {
				b = append(b, `,"PATHWAY-CLONES":[`...)
			} else {
				b = append(b, ',')
			}
			b = append(b, `{"BASE-ID":"`...)
			b = append(b, q.pathway...)
			b = append(b, `","ID":"`...)
			b = append(b, c.OriginID...)
			b = append(b, `","URI-REPLACEMENT":{"HOST":"`...)
			b = append(b, host...)
			b = append(b, `"}}`...)
			nc++
		}
		if nc > 0 {
			b = append(b, ']')
		}
	}
	b = append(b, "}\n"...)
	out := oSteering
	if q.pathway != "" && copies[0].OriginID != q.pathway {
		out = oSteeringMove
	}
	return answer{status: http.StatusOK, oc: out, body: b}, client, sticky, copies[0].OriginID
}

// hostOf returns host[:port] of a registry base URL of the given scheme, or false when the
// rest is anything but a plain host (a name, an IPv4 or bracketed IPv6 address) and port:
// no user info, path or query can ride along into a URI-REPLACEMENT.
func hostOf(base, scheme string) (string, bool) {
	rest, ok := strings.CutPrefix(base, scheme+"://")
	if !ok || rest == "" || len(rest) > 300 {
		return "", false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']') {
			return "", false
		}
	}
	return rest, true
}
