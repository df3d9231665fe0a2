package registry

import (
	"strings"
	"testing"
)

func TestKeysRoundTrip(t *testing.T) {
	t.Parallel()
	ks := keyspace{Namespace("k")}
	for _, id := range []string{"o1", "edge-1.example.com", "A_b-9", strings.Repeat("x", 64)} {
		for _, kind := range []string{keyRec, keyStreams, keyStreamsTmp} {
			key := ks.origin(id, kind)
			ns, gotID, gotKind, ok := parseOriginKey(key)
			if !ok || ns != ks.ns || gotID != id || gotKind != kind {
				t.Errorf("parse(%q) = %q %q %q %v", key, ns, gotID, gotKind, ok)
			}
			// One hash tag per origin: the Cluster slot depends on namespace and id only.
			if tag := key[strings.Index(key, "{")+1 : strings.Index(key, "}")]; tag != ks.ns+":"+id {
				t.Errorf("hash tag of %q is %q", key, tag)
			}
		}
	}
	if ks.rec("o1") != "pg:"+ks.ns+":{"+ks.ns+":o1}:rec" || ks.streams("o1") != "pg:"+ks.ns+":{"+ks.ns+":o1}:streams" {
		t.Fatalf("layout changed: %s %s", ks.rec("o1"), ks.streams("o1"))
	}
	if ks.origins() != "pg:"+ks.ns+":origins" || ks.events() != "pg:"+ks.ns+":events" {
		t.Fatalf("layout changed: %s %s", ks.origins(), ks.events())
	}
	for _, bad := range []string{"", "pg:", "pg:ns:origins", "pg:ns:{other:o1}:rec", "pg:ns:{ns:o1}:what", "pg:ns:{ns:{o}:rec", "xx:ns:{ns:o1}:rec"} {
		if _, _, _, ok := parseOriginKey(bad); ok {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}
