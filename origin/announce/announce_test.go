package announce

import (
	"reflect"
	"testing"

	"github.com/peergate/peergate/shared/cluster"
)

// recSink records registrar calls as "put NAME STATE" / "remove NAME".
type recSink struct{ calls []string }

func (r *recSink) PutStream(s cluster.Stream) { r.calls = append(r.calls, "put "+s.Name+" "+s.State) }
func (r *recSink) RemoveStream(name string)   { r.calls = append(r.calls, "remove "+name) }

type names map[string]bool

func (n names) Has(name string) bool { return n[name] }

// TestBook: the live and static writers merge as documented on Book; an on-demand NAME goes
// back to ondemand when it stops, and the metadata of a running stream reaches the registry.
func TestBook(t *testing.T) {
	t.Parallel()
	var meta cluster.StreamMeta
	cases := []struct {
		desc string
		do   func(b *Book)
		want []string
	}{
		{"publisher comes and goes", func(b *Book) {
			b.StreamRunning("live/cam1", meta)
			b.StreamStopped("live/cam1")
		}, []string{"put live/cam1 running", "remove live/cam1"}},
		{"a static entry comes back after a live stream of its name", func(b *Book) {
			b.StreamRunning("demo", meta)
			b.StreamStopped("demo")
		}, []string{"put demo running", "put demo ondemand"}},
		{"the API does not overwrite a live stream, and its entry shows when the stream ends", func(b *Book) {
			b.StreamRunning("x", meta)
			b.PutStream(cluster.Stream{Name: "x", State: cluster.StreamOnDemand})
			b.StreamStopped("x")
		}, []string{"put x running", "put x ondemand"}},
		{"the API withdrawing a live name leaves it until it ends", func(b *Book) {
			b.StreamRunning("demo", meta)
			b.RemoveStream("demo")
			b.StreamStopped("demo")
		}, []string{"put demo running", "remove demo"}},
		{"on-demand back to ondemand, then the API acts at once", func(b *Book) {
			b.StreamRunning("od", meta)
			b.StreamStopped("od")
			b.RemoveStream("od")
		}, []string{"put od running", "put od ondemand", "remove od"}},
		{"an API entry of a name that is not live shows at once", func(b *Book) {
			b.PutStream(cluster.Stream{Name: "y", State: cluster.StreamOnDemand})
			b.RemoveStream("y")
		}, []string{"put y ondemand", "remove y"}},
	}
	for _, ca := range cases {
		t.Run(ca.desc, func(t *testing.T) {
			t.Parallel()
			sink := &recSink{}
			b := NewBook(sink, []cluster.Stream{{Name: "demo", State: cluster.StreamOnDemand}}, names{"od": true})
			ca.do(b)
			if !reflect.DeepEqual(sink.calls, ca.want) {
				t.Fatalf("calls = %q, want %q", sink.calls, ca.want)
			}
		})
	}
}

// metaSink keeps the last stream put per NAME.
type metaSink map[string]cluster.Stream

func (m metaSink) PutStream(s cluster.Stream) { m[s.Name] = s }
func (m metaSink) RemoveStream(name string)   { delete(m, name) }

// TestBookMetaAndNoOnDemand: a running stream is put with its metadata, and a Book without
// on-demand NAMEs removes every stopped live stream.
func TestBookMetaAndNoOnDemand(t *testing.T) {
	t.Parallel()
	sink := metaSink{}
	b := NewBook(sink, nil, nil)
	meta := cluster.StreamMeta{Codecs: "avc1.64001f", Width: 640, Height: 360}
	b.StreamRunning("od/cam", meta)
	if got := sink["od/cam"]; got != (cluster.Stream{Name: "od/cam", State: cluster.StreamRunning, Meta: meta}) {
		t.Fatalf("od/cam = %+v", got)
	}
	b.StreamStopped("od/cam")
	if got, ok := sink["od/cam"]; ok {
		t.Fatalf("od/cam still listed after stop: %+v", got)
	}
}
