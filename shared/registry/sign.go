package registry

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
)

// What a signature covers; the kind keeps one signed payload from passing as another.
const (
	kindRecord = "record"
	kindStream = "stream"
	kindDelta  = "delta"
	kindBeat   = "heartbeat"
	kindBye    = "bye"
)

const (
	namespaceLabel = "peergate/registry/namespace/v1"
	macLabel       = "peergate/registry/mac/v1"
)

// ErrBadSignature is returned when a signed blob fails verification.
var ErrBadSignature = errors.New("registry: bad signature")

// Namespace derives the key prefix of a cluster from its key, so the key itself never reaches Redis.
func Namespace(clusterKey string) string {
	h := sha256.New()
	h.Write([]byte(namespaceLabel))
	h.Write([]byte{0})
	h.Write([]byte(clusterKey))
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// signer computes and checks HMACs for one cluster key and namespace.
type signer struct {
	key []byte
	ns  string
}

func newSigner(clusterKey string) signer {
	return signer{key: []byte(clusterKey), ns: Namespace(clusterKey)}
}

// appendField length-prefixes a field so that no two field lists encode alike.
func appendField(b []byte, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// mac is HMAC-SHA256 over label, kind, namespace, origin id and payload, each length-prefixed.
func (s signer) mac(kind, originID string, payload []byte) []byte {
	return s.macWith(hmac.New(sha256.New, s.key), kind, originID, payload)
}

// newMAC is a reusable hmac for macWith: keying one is most of the cost of a short MAC.
func (s signer) newMAC() hash.Hash { return hmac.New(sha256.New, s.key) }

// macWith is mac computed with m, from newMAC, which it resets first.
func (s signer) macWith(m hash.Hash, kind, originID string, payload []byte) []byte {
	m.Reset()
	var hdr []byte
	hdr = appendField(hdr, []byte(macLabel))
	hdr = appendField(hdr, []byte(kind))
	hdr = appendField(hdr, []byte(s.ns))
	hdr = appendField(hdr, []byte(originID))
	hdr = binary.AppendUvarint(hdr, uint64(len(payload)))
	m.Write(hdr)
	m.Write(payload)
	return m.Sum(nil)
}

func (s signer) verify(kind, originID string, payload, sig []byte) bool {
	return hmac.Equal(s.mac(kind, originID, payload), sig)
}

// envelope is how every signed value is stored and published.
type envelope struct {
	Sig  string          `json:"sig"`
	Body json.RawMessage `json:"body"`
}

// seal marshals v and wraps it with its signature.
func (s signer) seal(kind, originID string, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	// Built by hand in the form splitEnvelope reads; json.Marshal would re-scan the body.
	sig := s.mac(kind, originID, body)
	out := make([]byte, 0, len(envHead)+base64.RawStdEncoding.EncodedLen(len(sig))+len(envMid)+len(body)+1)
	out = append(out, envHead...)
	out = base64.RawStdEncoding.AppendEncode(out, sig)
	out = append(out, envMid...)
	out = append(out, body...)
	return append(out, '}'), nil
}

// open checks a sealed blob and decodes its body into v.
func (s signer) open(kind, originID string, blob []byte, v any) error {
	env, ok := splitEnvelope(blob)
	if !ok {
		if err := json.Unmarshal(blob, &env); err != nil {
			return ErrBadSignature
		}
	}
	sig, err := base64.RawStdEncoding.DecodeString(env.Sig)
	if err != nil || !s.verify(kind, originID, env.Body, sig) {
		return ErrBadSignature
	}
	return json.Unmarshal(env.Body, v)
}

const (
	envHead = `{"sig":"`
	envMid  = `","body":`
)

// splitEnvelope reads the exact form seal writes without a JSON pass, which halves the
// cost of a large snapshot. Anything else goes to encoding/json; the MAC and the body's
// own decoding reject whatever this split would get wrong.
func splitEnvelope(blob []byte) (envelope, bool) {
	rest, ok := bytes.CutPrefix(blob, []byte(envHead))
	if !ok {
		return envelope{}, false
	}
	sig, body, ok := bytes.Cut(rest, []byte(envMid))
	if !ok || len(body) < 2 || body[len(body)-1] != '}' {
		return envelope{}, false
	}
	body = body[:len(body)-1]
	if isSpace(body[0]) || isSpace(body[len(body)-1]) {
		return envelope{}, false // json.RawMessage would drop the spaces
	}
	for _, c := range sig {
		if !isBase64(c) {
			return envelope{}, false
		}
	}
	return envelope{Sig: string(sig), Body: body}, true
}

func isBase64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
