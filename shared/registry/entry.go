package registry

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"hash"
	"strconv"
	"unicode/utf8"

	"github.com/peergate/peergate/shared/cluster"
)

// entryOpener verifies and decodes stream entries, the bulk of a snapshot, at a fraction of
// signer.open's cost: one keyed MAC reused for every entry and a decoder for the exact form
// json.Marshal writes a cluster.Stream in. It checks every entry's MAC as open does and
// decodes only what verified. Not safe for concurrent use: one per goroutine.
type entryOpener struct {
	sg  signer
	mac hash.Hash
	sig []byte
}

func newEntryOpener(sg signer) *entryOpener {
	return &entryOpener{sg: sg, mac: sg.newMAC()}
}

// openStream is signer.open(kindStream, originID, blob, s).
func (o *entryOpener) openStream(originID string, blob []byte, s *cluster.Stream) error {
	env, ok := splitEnvelope(blob)
	if !ok {
		return o.sg.open(kindStream, originID, blob, s)
	}
	sig, err := base64.RawStdEncoding.AppendDecode(o.sig[:0], []byte(env.Sig))
	o.sig = sig
	if err != nil || !hmac.Equal(o.sg.macWith(o.mac, kindStream, originID, env.Body), sig) {
		return ErrBadSignature
	}
	if decodeStreamFast(env.Body, s) {
		return nil
	}
	*s = cluster.Stream{}
	return json.Unmarshal(env.Body, s)
}

// decodeStreamFast decodes body into s when body is in the form json.Marshal writes a
// cluster.Stream: no spaces, known keys each at most once, strings without escapes, integers.
// It reports false for anything else, which the caller hands to encoding/json (so both agree
// on every input this accepts; FuzzDecodeStreamFast checks that).
func decodeStreamFast(body []byte, s *cluster.Stream) bool {
	*s = cluster.Stream{}
	d := fastDec{b: body}
	var seen [4]bool
	ok := d.object(func(key []byte) bool {
		switch string(key) { // compared without a copy
		case "name":
			if seen[0] {
				return false
			}
			seen[0] = true
			v, ok := d.str()
			s.Name = v
			return ok
		case "state":
			if seen[1] {
				return false
			}
			seen[1] = true
			v, ok := d.raw()
			s.State = intern(v)
			return ok
		case "meta":
			if seen[2] {
				return false
			}
			seen[2] = true
			return d.meta(&s.Meta)
		case "upstream":
			if seen[3] {
				return false
			}
			seen[3] = true
			v, ok := d.str()
			s.Upstream = v
			return ok
		}
		return false
	})
	return ok && d.i == len(d.b)
}

// fastDec reads the compact JSON json.Marshal writes; any other form makes it fail.
type fastDec struct {
	b []byte
	i int
}

func (d *fastDec) next(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// object reads {"key":value,...}, calling field with the reader positioned on each value.
func (d *fastDec) object(field func(key []byte) bool) bool {
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return true
	}
	for {
		key, ok := d.raw()
		if !ok || !d.next(':') || !field(key) {
			return false
		}
		if d.next('}') {
			return true
		}
		if !d.next(',') {
			return false
		}
	}
}

// str reads a string without escapes or control characters, in valid UTF-8.
func (d *fastDec) str() (string, bool) {
	v, ok := d.raw()
	return string(v), ok
}

// intern returns the two stream states without allocating a copy each time.
func intern(v []byte) string {
	switch string(v) { // no allocation for the comparison
	case cluster.StreamRunning:
		return cluster.StreamRunning
	case cluster.StreamOnDemand:
		return cluster.StreamOnDemand
	}
	return string(v)
}

// raw is str's bytes, within the decoder's input.
func (d *fastDec) raw() ([]byte, bool) {
	if !d.next('"') {
		return nil, false
	}
	start := d.i
	ascii := true
	for ; d.i < len(d.b); d.i++ {
		switch c := d.b[d.i]; {
		case c == '"':
			v := d.b[start:d.i]
			d.i++
			if !ascii && !utf8.Valid(v) {
				return nil, false
			}
			return v, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// integer reads -?(0|[1-9][0-9]*) that fits in bits.
func (d *fastDec) integer(bits int) (int64, bool) {
	start := d.i
	d.next('-')
	digits := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	if d.i == digits || (d.b[digits] == '0' && d.i-digits > 1) {
		return 0, false
	}
	if d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		return 0, false
	}
	v, err := strconv.ParseInt(string(d.b[start:d.i]), 10, bits)
	return v, err == nil
}

func (d *fastDec) meta(m *cluster.StreamMeta) bool {
	var seen [4]bool
	once := func(i int) bool {
		if seen[i] {
			return false
		}
		seen[i] = true
		return true
	}
	return d.object(func(key []byte) bool {
		switch string(key) {
		case "codecs":
			if !once(0) {
				return false
			}
			v, ok := d.str()
			m.Codecs = v
			return ok
		case "width":
			if !once(1) {
				return false
			}
			v, ok := d.integer(strconv.IntSize)
			m.Width = int(v)
			return ok
		case "height":
			if !once(2) {
				return false
			}
			v, ok := d.integer(strconv.IntSize)
			m.Height = int(v)
			return ok
		case "bitrate_bps":
			if !once(3) {
				return false
			}
			v, ok := d.integer(64)
			m.BitrateBps = v
			return ok
		}
		return false
	})
}
