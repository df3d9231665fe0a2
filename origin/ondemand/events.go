package ondemand

import (
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/cluster"
)

// Registry is what RegistryEvents needs from the origin's registrar.
type Registry interface {
	PutStream(s cluster.Stream)
	RemoveStream(name string)
}

// RegistryEvents turns the Table's events into registry changes: a stream that starts is
// put as running with its metadata; one that stops is removed, except an on-demand NAME,
// which goes back to ondemand (it can still be started). Also gets every event afterwards
// (e.g. the HTTP server, for eager HLS muxers); set it before anything is published.
type RegistryEvents struct {
	Registry Registry
	OnDemand *Manager // optional
	Also     []media.Events
}

var _ media.Events = (*RegistryEvents)(nil)

// StreamRunning implements media.Events.
func (e *RegistryEvents) StreamRunning(name string, meta cluster.StreamMeta) {
	e.Registry.PutStream(cluster.Stream{Name: name, State: cluster.StreamRunning, Meta: meta})
	for _, a := range e.Also {
		a.StreamRunning(name, meta)
	}
}

// StreamStopped implements media.Events.
func (e *RegistryEvents) StreamStopped(name string) {
	if e.OnDemand != nil && e.OnDemand.Has(name) {
		e.Registry.PutStream(cluster.Stream{Name: name, State: cluster.StreamOnDemand})
	} else {
		e.Registry.RemoveStream(name)
	}
	for _, a := range e.Also {
		a.StreamStopped(name)
	}
}
