package main

import (
	"reflect"
	"testing"

	"github.com/peergate/peergate/shared/cluster"
)

// recSink records registrar calls as "put NAME STATE" / "remove NAME".
type recSink struct{ calls []string }

func (r *recSink) PutStream(s cluster.Stream) { r.calls = append(r.calls, "put "+s.Name+" "+s.State) }
func (r *recSink) RemoveStream(name string)   { r.calls = append(r.calls, "remove "+name) }

func TestStreamBook(t *testing.T) {
	t.Parallel()
	run := cluster.StreamRunning
	cases := []struct {
		desc string
		do   func(m mediaSide, a apiSide)
		want []string
	}{
		{"publisher comes and goes", func(m mediaSide, a apiSide) {
			m.PutStream(cluster.Stream{Name: "live/cam1", State: run})
			m.RemoveStream("live/cam1")
		}, []string{"put live/cam1 running", "remove live/cam1"}},
		{"a static entry comes back after a live stream of its name", func(m mediaSide, a apiSide) {
			m.PutStream(cluster.Stream{Name: "demo", State: run})
			m.RemoveStream("demo")
		}, []string{"put demo running", "put demo ondemand"}},
		{"the API does not overwrite a live stream, and its entry shows when the stream ends", func(m mediaSide, a apiSide) {
			m.PutStream(cluster.Stream{Name: "x", State: run})
			a.PutStream(cluster.Stream{Name: "x", State: cluster.StreamOnDemand})
			m.RemoveStream("x")
		}, []string{"put x running", "put x ondemand"}},
		{"the API withdrawing a live name leaves it until it ends", func(m mediaSide, a apiSide) {
			m.PutStream(cluster.Stream{Name: "demo", State: run})
			a.RemoveStream("demo")
			m.RemoveStream("demo")
		}, []string{"put demo running", "remove demo"}},
		{"on-demand back to ondemand, then the API acts at once", func(m mediaSide, a apiSide) {
			m.PutStream(cluster.Stream{Name: "od", State: run})
			m.PutStream(cluster.Stream{Name: "od", State: cluster.StreamOnDemand})
			a.RemoveStream("od")
		}, []string{"put od running", "put od ondemand", "remove od"}},
	}
	for _, ca := range cases {
		t.Run(ca.desc, func(t *testing.T) {
			t.Parallel()
			sink := &recSink{}
			b := newStreamBook(sink, []cluster.Stream{{Name: "demo", State: cluster.StreamOnDemand}})
			ca.do(mediaSide{b}, apiSide{b})
			if !reflect.DeepEqual(sink.calls, ca.want) {
				t.Fatalf("calls = %q, want %q", sink.calls, ca.want)
			}
		})
	}
}
