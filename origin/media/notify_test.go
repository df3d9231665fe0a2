package media

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestNotify: every receiver added with Notify gets every event delivered after the call, in
// order, and none delivered before it.
func TestNotify(t *testing.T) {
	t.Parallel()
	first, second := newRec(), newRec()
	tbl := NewTable(Config{})
	defer tbl.Close()
	tbl.Notify(first)
	tbl.Notify(second)
	st, _ := tbl.Publish("live/x", testTracks())
	st.WriteUnit(Unit{Track: 0, AU: [][]byte{idr}})
	st.Close()
	for _, r := range []*recEvents{first, second} {
		if e := r.next(t); e != "running live/x avc1.64001f,mp4a.40.2" {
			t.Fatalf("event %q", e)
		}
		if e := r.next(t); e != "stopped live/x" {
			t.Fatalf("event %q", e)
		}
	}

	// A receiver added later gets the events delivered after it only.
	tbl2 := NewTable(Config{})
	defer tbl2.Close()
	early := newRec()
	tbl2.Notify(early)
	st2, err := tbl2.Publish("live/y", testTracks())
	if err != nil {
		t.Fatal(err)
	}
	st2.WriteUnit(Unit{Track: 0, AU: [][]byte{idr}})
	st2.Close()
	for _, want := range []string{"running live/y avc1.64001f,mp4a.40.2", "stopped live/y"} {
		if e := early.next(t); e != want {
			t.Fatalf("early receiver: event %q, want %q", e, want)
		}
	}
	late := newRec()
	tbl2.Notify(late)
	st3, _ := tbl2.Publish("live/z", testTracks())
	st3.WriteUnit(Unit{Track: 0, AU: [][]byte{idr}})
	st3.Close()
	for _, want := range []string{"running live/z avc1.64001f,mp4a.40.2", "stopped live/z"} {
		if e := late.next(t); e != want {
			t.Fatalf("late receiver: event %q, want %q", e, want)
		}
	}
}

// TestCollector: the table's viewers, egress bytes and live streams are exported, with every
// protocol present even at zero.
func TestCollector(t *testing.T) {
	t.Parallel()
	tbl := NewTable(Config{})
	defer tbl.Close()
	st, _ := tbl.Publish("live/x", testTracks())
	defer st.Close()
	v := st.Join(ProtoRTMP)
	v.Sent(1234)
	defer v.Leave()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(tbl))
	want := `
# HELP peergate_origin_clients Viewers currently served, per protocol.
# TYPE peergate_origin_clients gauge
peergate_origin_clients{proto="hls"} 0
peergate_origin_clients{proto="mpegts"} 0
peergate_origin_clients{proto="rtmp"} 1
peergate_origin_clients{proto="rtsp"} 0
# HELP peergate_origin_egress_bytes_total Media bytes sent to viewers, per protocol.
# TYPE peergate_origin_egress_bytes_total counter
peergate_origin_egress_bytes_total{proto="hls"} 0
peergate_origin_egress_bytes_total{proto="mpegts"} 0
peergate_origin_egress_bytes_total{proto="rtmp"} 1234
peergate_origin_egress_bytes_total{proto="rtsp"} 0
# HELP peergate_origin_streams Live streams (publishing now).
# TYPE peergate_origin_streams gauge
peergate_origin_streams 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
