package registry

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	m := hmac.New(sha256.New, s.key)
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
	return json.Marshal(envelope{Sig: base64.RawStdEncoding.EncodeToString(s.mac(kind, originID, body)), Body: body})
}

// open checks a sealed blob and decodes its body into v.
func (s signer) open(kind, originID string, blob []byte, v any) error {
	var env envelope
	if err := json.Unmarshal(blob, &env); err != nil {
		return ErrBadSignature
	}
	sig, err := base64.RawStdEncoding.DecodeString(env.Sig)
	if err != nil || !s.verify(kind, originID, env.Body, sig) {
		return ErrBadSignature
	}
	return json.Unmarshal(env.Body, v)
}
