package resolve

import (
	"testing"

	"github.com/peergate/peergate/shared/cluster"
)

func TestPlace(t *testing.T) {
	t.Parallel()
	const cam = "live/cam1"
	rtsp := func(id string) string { return "rtsp://" + id + ".example.com:8555" }
	tests := []struct {
		desc  string
		views []cluster.OriginView
		want  Result
	}{
		{desc: "empty table", want: Result{Outcome: NotFound}},
		{
			desc:  "reconnecting encoder goes where the name runs, even when that origin is busier",
			views: []cluster.OriginView{view(org("o1", util(0.9)), running(cam)), view(org("o2", util(0)))},
			want:  Result{Outcome: OK, OriginID: "o1", BaseURL: rtsp("o1"), Scheme: "rtsp"},
		},
		{
			desc:  "a draining origin running the name does not take it back",
			views: []cluster.OriginView{view(org("o1", draining), running(cam)), view(org("o2", util(0.5)))},
			want:  Result{Outcome: OK, OriginID: "o2", BaseURL: rtsp("o2"), Scheme: "rtsp"},
		},
		{
			desc:  "least utilized new origin",
			views: []cluster.OriginView{view(org("o1", util(0.5))), view(org("o2", util(0.2))), view(org("o3", util(0.7)))},
			want:  Result{Outcome: OK, OriginID: "o2", BaseURL: rtsp("o2"), Scheme: "rtsp"},
		},
		{
			desc:  "full and draining origins never take a publisher",
			views: []cluster.OriginView{view(org("o1", util(1))), view(org("o2", draining))},
			want:  Result{Outcome: Unavailable},
		},
		{
			desc:  "an origin without the protocol is skipped",
			views: []cluster.OriginView{view(org("o1", public("http", "http://o1:1"))), view(org("o2", util(0.9)))},
			want:  Result{Outcome: OK, OriginID: "o2", BaseURL: rtsp("o2"), Scheme: "rtsp"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			got := table(tc.views...).Place(Request{Name: cam, Proto: ProtoRTSP})
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	// Equal loads: every gateway (every table) picks the same origin for a name.
	views := []cluster.OriginView{view(org("a")), view(org("b")), view(org("c"))}
	first := table(views...).Place(Request{Name: cam, Proto: ProtoRTSP})
	for range 5 {
		if got := table(views...).Place(Request{Name: cam, Proto: ProtoRTSP}); got != first {
			t.Fatalf("placement differs between tables: %+v vs %+v", got, first)
		}
	}
}

// TestPrivateURL: an origin's private address replaces the host of its public URL for the
// gateway's own connections (relays), keeping the public port; redirects keep BaseURL.
func TestPrivateURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ private, want string }{
		{"", ""},
		{"origin1", "rtsp://origin1:8555"},
		{"10.0.0.5", "rtsp://10.0.0.5:8555"},
		{"10.0.0.5:9999", "rtsp://10.0.0.5:8555"},
		{"fd00::1", "rtsp://[fd00::1]:8555"},
		{"bad host", ""},
		{"a/b", ""},
	} {
		o := org("o1")
		o.Private = tc.private
		tb := table(view(o, running("cam")))
		for _, r := range []Result{tb.Resolve(Request{Name: "cam", Proto: ProtoRTSP}), tb.Place(Request{Name: "cam", Proto: ProtoRTSP})} {
			if r.BaseURL != "rtsp://o1.example.com:8555" || r.PrivateURL != tc.want {
				t.Errorf("private %q: base %q private %q, want private %q", tc.private, r.BaseURL, r.PrivateURL, tc.want)
			}
			want := tc.want
			if want == "" {
				want = r.BaseURL
			}
			if r.DialURL() != want {
				t.Errorf("private %q: DialURL %q, want %q", tc.private, r.DialURL(), want)
			}
		}
	}
}
