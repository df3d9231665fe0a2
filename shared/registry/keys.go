package registry

import (
	"strings"

	"github.com/peergate/peergate/shared/cluster"
)

// Key layout, all under pg:<ns>: (ns from Namespace). Per-origin keys share the hash tag
// {<ns>:<id>} so one origin's keys sit in one Cluster slot and origins spread over slots.
//
//	pg:<ns>:origins                    ZSET member=origin id, score=expiry (unix ms)
//	pg:<ns>:events                     pub/sub channel of signed events
//	pg:<ns>:{<ns>:<id>}:rec            signed origin record, PX TTL
//	pg:<ns>:{<ns>:<id>}:streams        HASH name -> signed stream entry, same TTL
//	pg:<ns>:{<ns>:<id>}:streams.tmp    staging copy for a whole-list rewrite
//	pg:<ns>:claim:<NAME>               publish claim: id of the origin publishing NAME, PX TTL (claim.go)
const keyPrefix = "pg:"

// Per-origin key kinds.
const (
	keyRec        = "rec"
	keyStreams    = "streams"
	keyStreamsTmp = "streams.tmp"
)

type keyspace struct{ ns string }

func (k keyspace) origins() string { return keyPrefix + k.ns + ":origins" }
func (k keyspace) events() string  { return keyPrefix + k.ns + ":events" }

func (k keyspace) origin(id, kind string) string {
	return keyPrefix + k.ns + ":{" + k.ns + ":" + id + "}:" + kind
}

func (k keyspace) rec(id string) string        { return k.origin(id, keyRec) }
func (k keyspace) streams(id string) string    { return k.origin(id, keyStreams) }
func (k keyspace) streamsTmp(id string) string { return k.origin(id, keyStreamsTmp) }

// parseOriginKey splits a per-origin key back into namespace, origin id and kind.
func parseOriginKey(key string) (ns, id, kind string, ok bool) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return "", "", "", false
	}
	ns, rest, ok = strings.Cut(rest, ":{")
	if !ok {
		return "", "", "", false
	}
	tag, kind, ok := strings.Cut(rest, "}:")
	if !ok {
		return "", "", "", false
	}
	tagNS, id, ok := strings.Cut(tag, ":")
	if !ok || tagNS != ns || !cluster.ValidID(id) {
		return "", "", "", false
	}
	switch kind {
	case keyRec, keyStreams, keyStreamsTmp:
		return ns, id, kind, true
	}
	return "", "", "", false
}
