package resolve

import (
	"fmt"

	"github.com/peergate/peergate/shared/cluster"
)

// org builds an up origin offering http and rtsp on its own host; opts adjust it.
func org(id string, opts ...func(*cluster.Origin)) cluster.Origin {
	o := cluster.Origin{
		ID:    id,
		State: cluster.StateUp,
		Public: cluster.Public{
			"http": fmt.Sprintf("http://%s.example.com:8081", id),
			"rtsp": fmt.Sprintf("rtsp://%s.example.com:8555", id),
		},
	}
	for _, f := range opts {
		f(&o)
	}
	return o
}

func draining(o *cluster.Origin) { o.State = cluster.StateDraining }

func public(kv ...string) func(*cluster.Origin) {
	return func(o *cluster.Origin) {
		o.Public = cluster.Public{}
		for i := 0; i+1 < len(kv); i += 2 {
			o.Public[kv[i]] = kv[i+1]
		}
	}
}

func load(clients, egress int64, cpu float64) func(*cluster.Origin) {
	return func(o *cluster.Origin) { o.Load = cluster.Load{Clients: clients, EgressBps: egress, CPU: cpu} }
}

func capacity(maxClients, maxBps int64) func(*cluster.Origin) {
	return func(o *cluster.Origin) {
		o.Capacity = cluster.Capacity{MaxClients: maxClients, MaxBandwidthBps: maxBps}
	}
}

// util sets a utilization through the client count against a capacity of 1000.
func util(u float64) func(*cluster.Origin) {
	return func(o *cluster.Origin) {
		o.Capacity = cluster.Capacity{MaxClients: 1000}
		o.Load = cluster.Load{Clients: int64(u * 1000)}
	}
}

func running(names ...string) []cluster.Stream { return streams(cluster.StreamRunning, names...) }
func ondemand(names ...string) []cluster.Stream {
	return streams(cluster.StreamOnDemand, names...)
}

func streams(state string, names ...string) []cluster.Stream {
	out := make([]cluster.Stream, len(names))
	for i, n := range names {
		out[i] = cluster.Stream{Name: n, State: state}
	}
	return out
}

func view(o cluster.Origin, s ...[]cluster.Stream) cluster.OriginView {
	v := cluster.OriginView{Origin: o}
	for _, l := range s {
		v.Streams = append(v.Streams, l...)
	}
	return v
}

func table(views ...cluster.OriginView) *Table {
	t := New(Options{Hysteresis: DefaultHysteresis})
	t.ReplaceAll(views)
	return t
}
