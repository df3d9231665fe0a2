package registry

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/peergate/peergate/shared/cluster"
)

func TestNamespace(t *testing.T) {
	t.Parallel()
	a, b := Namespace("secret-one"), Namespace("secret-two")
	if len(a) != 16 || a == b || a != Namespace("secret-one") {
		t.Fatalf("namespaces %q %q", a, b)
	}
	if _, err := hex.DecodeString(a); err != nil {
		t.Fatalf("not hex: %q", a)
	}
	if strings.Contains(a, "secret") {
		t.Fatal("key leaks into namespace")
	}
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	sg := newSigner("k1")
	st := cluster.Stream{Name: "live/cam1", State: cluster.StreamRunning, Meta: cluster.StreamMeta{Width: 640}}
	blob, err := sg.seal(kindStream, "o1", st)
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal(blob, &env); err != nil || env.Sig == "" {
		t.Fatalf("sealed blob is not a JSON envelope: %s", blob)
	}
	var got cluster.Stream
	if err := sg.open(kindStream, "o1", blob, &got); err != nil || got != st {
		t.Fatalf("open = %+v, %v", got, err)
	}
	cases := []struct {
		desc string
		sg   signer
		kind string
		id   string
		blob []byte
	}{
		{"other key", newSigner("k2"), kindStream, "o1", blob},
		{"other kind", sg, kindRecord, "o1", blob},
		{"other origin", sg, kindStream, "o2", blob},
		{"tampered body", sg, kindStream, "o1", []byte(strings.Replace(string(blob), "640", "641", 1))},
		{"not json", sg, kindStream, "o1", []byte("garbage")},
		{"no sig", sg, kindStream, "o1", []byte(`{"body":{}}`)},
		{"bad sig encoding", sg, kindStream, "o1", []byte(`{"sig":"!!","body":{}}`)},
	}
	for _, c := range cases {
		if err := c.sg.open(c.kind, c.id, c.blob, &got); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: err = %v, want ErrBadSignature", c.desc, err)
		}
	}
}

func TestMACDomainSeparation(t *testing.T) {
	t.Parallel()
	sg := newSigner("k")
	// Moving bytes between fields must change the MAC (length prefixes).
	a := sg.mac("ab", "c", []byte("d"))
	b := sg.mac("a", "bc", []byte("d"))
	c := sg.mac("a", "b", []byte("cd"))
	if string(a) == string(b) || string(b) == string(c) || string(a) == string(c) {
		t.Fatal("field boundaries do not separate MACs")
	}
	if string(sg.mac("k", "o", nil)) == string(newSigner("k2").mac("k", "o", nil)) {
		t.Fatal("key does not change the MAC")
	}
}

func TestEventSealOpen(t *testing.T) {
	t.Parallel()
	sg := newSigner("k")
	blob, err := sg.sealEvent(eventBye, "o1", byeBody{Epoch: 7})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := sg.openEvent(blob)
	if err != nil || ev.Kind != eventBye || ev.Origin != "o1" {
		t.Fatalf("openEvent = %+v, %v", ev, err)
	}
	var e event
	_ = json.Unmarshal(blob, &e)
	e.Kind = eventBeat // a bye replayed as a heartbeat must fail
	re, _ := json.Marshal(e)
	if _, err := sg.openEvent(re); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("kind swap: %v", err)
	}
	e.Kind, e.Origin = eventBye, "o2"
	re, _ = json.Marshal(e)
	if _, err := sg.openEvent(re); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("origin swap: %v", err)
	}
	if _, err := newSigner("other").openEvent(blob); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other key: %v", err)
	}
	if _, err := sg.openEvent(make([]byte, maxEventSize+1)); err == nil {
		t.Fatal("oversized event accepted")
	}
}

func FuzzOpenEvent(f *testing.F) {
	sg := newSigner("k")
	for _, v := range []struct {
		kind string
		body any
	}{
		{eventBye, byeBody{Epoch: 1}},
		{eventDelta, deltaBody{Epoch: 1, Version: 2, Changes: []cluster.StreamChange{{Stream: cluster.Stream{Name: "a", State: "running"}}}}},
		{eventBeat, beatBody{Seq: 1, Rec: cluster.Origin{ID: "o1"}}},
	} {
		b, err := sg.sealEvent(v.kind, "o1", v.body)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"hb","origin":"{x}","sig":"","body":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := sg.openEvent(b)
		if err != nil {
			return
		}
		if !cluster.ValidID(ev.Origin) {
			t.Fatalf("accepted invalid origin %q", ev.Origin)
		}
		mk, _ := macKindOf(ev.Kind)
		sig := sg.mac(mk, ev.Origin, ev.Body)
		if !sg.verify(mk, ev.Origin, ev.Body, sig) {
			t.Fatal("verify is not stable")
		}
	})
}

func FuzzSplitEnvelope(f *testing.F) {
	sg := newSigner("k")
	for _, st := range []cluster.Stream{{Name: "a", State: "running"}, {Name: `q"uo}te`, State: "ondemand", Meta: cluster.StreamMeta{Codecs: "avc1"}}} {
		b, err := sg.seal(kindStream, "o1", st)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"sig":"","body":{}}`))
	f.Add([]byte(`{"sig":"x","body":1} ,"body":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := splitEnvelope(b)
		if !ok || !json.Valid(fast.Body) {
			return
		}
		// Whenever the fast split yields a valid body, encoding/json must read the same envelope.
		var slow envelope
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("fast path accepted what json rejects: %v", err)
		}
		if slow.Sig != fast.Sig || string(slow.Body) != string(fast.Body) {
			t.Fatalf("fast %q/%q slow %q/%q", fast.Sig, fast.Body, slow.Sig, slow.Body)
		}
	})
}
