package registry

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/peergate/peergate/shared/cluster"
)

// Event kinds on the pub/sub channel.
const (
	eventBeat  = "hb"
	eventDelta = "delta"
	eventBye   = "bye"
)

// maxEventSize bounds what the Watcher will parse from the channel.
const maxEventSize = 1 << 20

// event is one signed message on the channel; the MAC covers kind, namespace, origin and body.
type event struct {
	Kind   string          `json:"kind"`
	Origin string          `json:"origin"`
	Sig    string          `json:"sig"`
	Body   json.RawMessage `json:"body"`
}

// beatBody is published on every heartbeat and on state changes.
// Its freshness is the record's own: Rec.IssuedMillis, Rec.Epoch and Rec.TTLMillis.
type beatBody struct {
	Seq uint64         `json:"seq"` // grows per heartbeat within an epoch; older ones are ignored
	Rec cluster.Origin `json:"rec"`
}

// deltaBody is a stream-list change from FromVersion to Version. It carries no issue time:
// deltas are ordered by epoch and version, a replayed one names a version already applied,
// and none extends an origin's life.
type deltaBody struct {
	Epoch       uint64                 `json:"epoch"`
	FromVersion uint64                 `json:"from_version"`
	Version     uint64                 `json:"version"`
	Changes     []cluster.StreamChange `json:"changes"`
}

// byeBody announces a graceful deregistration.
type byeBody struct {
	Epoch uint64 `json:"epoch"`
}

func macKindOf(eventKind string) (string, bool) {
	switch eventKind {
	case eventBeat:
		return kindBeat, true
	case eventDelta:
		return kindDelta, true
	case eventBye:
		return kindBye, true
	}
	return "", false
}

func (s signer) sealEvent(kind, originID string, v any) ([]byte, error) {
	mk, ok := macKindOf(kind)
	if !ok {
		return nil, fmt.Errorf("registry: unknown event kind %q", kind)
	}
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	sig := base64.RawStdEncoding.EncodeToString(s.mac(mk, originID, body))
	return json.Marshal(event{Kind: kind, Origin: originID, Sig: sig, Body: body})
}

// openEvent parses and verifies a channel message; the body is left for the caller to decode.
func (s signer) openEvent(payload []byte) (event, error) {
	var ev event
	if len(payload) > maxEventSize {
		return ev, fmt.Errorf("registry: event of %d bytes is too large", len(payload))
	}
	if err := json.Unmarshal(payload, &ev); err != nil {
		return ev, ErrBadSignature
	}
	mk, ok := macKindOf(ev.Kind)
	if !ok || !cluster.ValidID(ev.Origin) {
		return ev, ErrBadSignature
	}
	sig, err := base64.RawStdEncoding.DecodeString(ev.Sig)
	if err != nil || !s.verify(mk, ev.Origin, ev.Body, sig) {
		return ev, ErrBadSignature
	}
	return ev, nil
}

// decodeBody decodes a verified body; unknown fields are tolerated for forward compatibility.
func decodeBody(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("registry: malformed event body: %w", err)
	}
	return nil
}
