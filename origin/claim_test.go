package main

import (
	"context"
	"errors"
	"testing"

	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/registry"
)

// TestPublishAuthorizer: the key is checked before the claim (a publisher without a valid key
// takes no claim), a claim held elsewhere reads as a duplicate publish, and with neither a
// key check nor claims anyone may publish.
func TestPublishAuthorizer(t *testing.T) {
	if publishAuthorizer(nil, nil) != nil {
		t.Fatal("no key and no claim must leave publishing open (nil)")
	}
	badKey := errors.New("publish key wrong")
	var claimed []string
	claim := func(_ context.Context, name string) error {
		claimed = append(claimed, name)
		if name == "live/taken" {
			return registry.ErrClaimed
		}
		return nil
	}
	key := func(name, query, _ string) error {
		if query != "key=ok" {
			return badKey
		}
		return nil
	}
	auth := publishAuthorizer(key, claim)
	if err := auth("live/a", "key=bad", "127.0.0.1"); !errors.Is(err, badKey) || len(claimed) != 0 {
		t.Fatalf("bad key: %v, claims taken %v", err, claimed)
	}
	if err := auth("live/a", "key=ok", "127.0.0.1"); err != nil || len(claimed) != 1 {
		t.Fatalf("good key: %v, claims %v", err, claimed)
	}
	err := auth("live/taken", "key=ok", "127.0.0.1")
	if !errors.Is(err, media.ErrAlreadyPublishing) || !errors.Is(err, registry.ErrClaimed) {
		t.Fatalf("claimed elsewhere: %v, want ErrAlreadyPublishing wrapping ErrClaimed", err)
	}
	if err := publishAuthorizer(nil, claim)("live/b", "", "127.0.0.1"); err != nil {
		t.Fatalf("open publishing still claims: %v", err)
	}
	if publishAuthorizer(key, nil) == nil {
		t.Fatal("allow_duplicates dropped the key check")
	}
}
