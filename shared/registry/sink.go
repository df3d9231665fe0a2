package registry

import "github.com/peergate/peergate/shared/cluster"

// OriginView and Sink are the consumer's contract, defined in shared/cluster; the Watcher feeds them.
type (
	OriginView = cluster.OriginView
	Sink       = cluster.Sink
)
