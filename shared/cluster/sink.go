package cluster

// OriginView is one live origin with its whole verified stream list.
type OriginView struct {
	Origin  Origin
	Streams []Stream
}

// Sink receives the verified cluster view that the registry's Watcher keeps in step with
// Redis. The gateway's in-memory index implements it; the contract lives here, with the data
// model, so that the consumer builds without the store (and without go-redis). Calls come from
// one goroutine at a time; the Sink must be safe for concurrent readers of its own. Liveness
// (TTL expiry, version gaps, epochs) is the Watcher's business: the Sink only stores what it
// is told.
type Sink interface {
	// ReplaceAll swaps the whole view (start, anti-entropy, reconnect).
	ReplaceAll(origins []OriginView)
	// PutOrigin adds an origin or refreshes its record (state, load, capacity, URLs)
	// without touching its streams; a new origin starts with no streams.
	PutOrigin(o Origin)
	// PutStreams replaces one origin's whole stream list.
	PutStreams(originID string, streams []Stream)
	// ApplyStreams applies a delta to one origin's stream list.
	ApplyStreams(originID string, changes []StreamChange)
	// DropOrigin removes an origin and all its streams.
	DropOrigin(originID string)
}
