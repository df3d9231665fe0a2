package registry

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/peergate/peergate/shared/cluster"
)

var streamBodies = []struct {
	body string
	fast bool // decodeStreamFast takes it (else encoding/json does)
}{
	{`{"name":"live/a","state":"running"}`, true},
	{`{"name":"live/a","state":"ondemand","meta":{"codecs":"avc1.64001f,mp4a.40.2","width":1280,"height":720,"bitrate_bps":2000000}}`, true},
	{`{"name":"live/ü","state":"running","meta":{}}`, true},
	{`{"state":"running","name":"x","meta":{"width":-0}}`, true},
	{`{}`, true},
	{`{"name":"live/a","state":"running","upstream":"o1"}`, true},
	{`{"name":"live/a","upstream":"o1","upstream":"o2"}`, false},       // repeated upstream
	{`{"name":"a\u003cb","state":"running"}`, false},                   // escapes
	{`{"name":"a","state":"running","extra":1}`, false},                // unknown key
	{`{"Name":"a","state":"running"}`, false},                          // encoding/json matches keys case-insensitively
	{`{"name":"a","name":"b"}`, false},                                 // repeated key
	{`{ "name":"a"}`, false},                                           // spaces
	{`{"name":"a","meta":{"width":1.5}}`, false},                       // not an integer
	{`{"name":"a","meta":{"width":1e3}}`, false},                       // exponent
	{`{"name":"a","meta":{"width":01}}`, false},                        // leading zero
	{`{"name":"a","meta":{"width":99999999999999999999}}`, false},      // overflow
	{`{"name":"a","meta":null}`, false},                                // null
	{"{\"name\":\"\xff\"}", false},                                     // invalid UTF-8
	{`{"name":"a"`, false},                                             // truncated
	{`{"name":"a"}x`, false},                                           // trailing bytes
	{`{"name":"a","meta":{"codecs":"x","codecs":"y"}}`, false},         // repeated meta key
	{`{"name":"a","meta":{"bitrate_bps":-9223372036854775808}}`, true}, // int64 bounds
}

// TestDecodeStreamFast: the fast decoder takes the compact form json.Marshal writes and
// agrees with encoding/json on it, and declines everything else.
func TestDecodeStreamFast(t *testing.T) {
	for _, tc := range streamBodies {
		var got cluster.Stream
		if ok := decodeStreamFast([]byte(tc.body), &got); ok != tc.fast {
			t.Errorf("%s: fast %v, want %v", tc.body, ok, tc.fast)
			continue
		}
		if !tc.fast {
			continue
		}
		var want cluster.Stream
		if err := json.Unmarshal([]byte(tc.body), &want); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: fast %+v, encoding/json %+v (%v)", tc.body, got, want, err)
		}
	}
	// What seal writes is always taken.
	for _, s := range manyStreams("live", 50) {
		body, _ := json.Marshal(s)
		var got cluster.Stream
		if !decodeStreamFast(body, &got) || !reflect.DeepEqual(got, s) {
			t.Fatalf("%s: %+v", body, got)
		}
	}
}

// TestEntryOpener: the snapshot's opener verifies exactly as signer.open does: entries signed
// for another origin, kind or key, or changed after signing, are ErrBadSignature; good ones
// decode, on the fast path or through encoding/json.
func TestEntryOpener(t *testing.T) {
	sg := newSigner("k1")
	op := newEntryOpener(sg)
	s := cluster.Stream{Name: "live/a", State: cluster.StreamRunning, Meta: cluster.StreamMeta{Width: 640}}
	good, err := sg.seal(kindStream, "o1", s)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // the MAC is reused: the answer must not depend on what it saw before
		var got cluster.Stream
		if err := op.openStream("o1", good, &got); err != nil || !reflect.DeepEqual(got, s) {
			t.Fatalf("round %d: %+v %v", i, got, err)
		}
		if err := op.openStream("o2", good, &got); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("round %d: other origin: %v", i, err)
		}
	}
	otherKind, _ := sg.seal(kindRecord, "o1", s)
	otherKey, _ := newSigner("k2").seal(kindStream, "o1", s)
	tampered := []byte(string(good))
	tampered[len(tampered)-3] ^= 1
	spaced := []byte(`{"body": ` + string(good[len(`{"sig":"`)+43+len(`","body":`):len(good)-1]) + `, "sig":"` + string(good[len(`{"sig":"`):len(`{"sig":"`)+43]) + `"}`)
	for name, blob := range map[string][]byte{"kind": otherKind, "key": otherKey, "tampered": tampered, "garbage": []byte("{"), "empty": nil} {
		var got cluster.Stream
		if err := op.openStream("o1", blob, &got); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
	var got cluster.Stream
	if err := op.openStream("o1", spaced, &got); err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("re-encoded envelope: %+v %v", got, err)
	}
}

// FuzzDecodeStreamFast: whatever the fast decoder accepts, encoding/json decodes alike.
func FuzzDecodeStreamFast(f *testing.F) {
	for _, tc := range streamBodies {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var got cluster.Stream
		if !decodeStreamFast(body, &got) {
			return
		}
		var want cluster.Stream
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("%q: fast decoded %+v, encoding/json: %v", body, got, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: fast %+v, encoding/json %+v", body, got, want)
		}
	})
}
