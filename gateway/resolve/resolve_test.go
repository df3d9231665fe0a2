package resolve

import (
	"fmt"
	"hash/fnv"
	"testing"
	"unsafe"

	"github.com/peergate/peergate/shared/cluster"
)

func TestResolveRules(t *testing.T) {
	t.Parallel()
	const cam = "live/cam1"
	tests := []struct {
		desc  string
		views []cluster.OriginView
		req   Request
		want  Result
	}{
		{
			desc:  "unknown name is not found",
			views: []cluster.OriginView{view(org("o1"), running("other"))},
			req:   Request{Name: cam},
			want:  Result{Outcome: NotFound},
		},
		{
			desc: "empty table is not found",
			req:  Request{Name: cam},
			want: Result{Outcome: NotFound},
		},
		{
			desc:  "listed only on a draining origin is unavailable",
			views: []cluster.OriginView{view(org("o1", draining), running(cam))},
			req:   Request{Name: cam},
			want:  Result{Outcome: Unavailable},
		},
		{
			desc:  "single running origin",
			views: []cluster.OriginView{view(org("o1"), running(cam))},
			req:   Request{Name: cam, Client: "10.0.0.1"},
			want:  Result{Outcome: OK, OriginID: "o1", BaseURL: "http://o1.example.com:8081", Scheme: "http"},
		},
		{
			desc: "running beats ondemand whatever the scores",
			views: []cluster.OriginView{
				view(org("o1"), ondemand(cam)), view(org("o2"), ondemand(cam)),
				view(org("o3"), running(cam)), view(org("o4"), ondemand(cam)),
			},
			req:  Request{Name: cam, Client: "c"},
			want: Result{Outcome: OK, OriginID: "o3", BaseURL: "http://o3.example.com:8081", Scheme: "http"},
		},
		{
			desc: "running beats ondemand even when more loaded",
			views: []cluster.OriginView{
				view(org("o1", util(0.95)), running(cam)), view(org("o2", util(0)), ondemand(cam)),
			},
			req:  Request{Name: cam},
			want: Result{Outcome: OK, OriginID: "o1", BaseURL: "http://o1.example.com:8081", Scheme: "http"},
		},
		{
			desc: "draining running origin excluded, ondemand used",
			views: []cluster.OriginView{
				view(org("o1", draining), running(cam)), view(org("o2"), ondemand(cam)),
			},
			req:  Request{Name: cam},
			want: Result{Outcome: OK, OriginID: "o2", BaseURL: "http://o2.example.com:8081", Scheme: "http"},
		},
		{
			desc: "draining excluded among running",
			views: []cluster.OriginView{
				view(org("o1", draining), running(cam)), view(org("o2"), running(cam)),
			},
			req:  Request{Name: cam},
			want: Result{Outcome: OK, OriginID: "o2", BaseURL: "http://o2.example.com:8081", Scheme: "http"},
		},
		{
			desc: "unknown origin state excluded",
			views: []cluster.OriginView{
				view(org("o1", func(o *cluster.Origin) { o.State = "starting" }), running(cam)),
			},
			req:  Request{Name: cam},
			want: Result{Outcome: Unavailable},
		},
		{
			desc: "clients at max_clients excluded",
			views: []cluster.OriginView{
				view(org("o1", capacity(100, 0), load(100, 0, 0)), running(cam)),
				view(org("o2", capacity(100, 0), load(99, 0, 0.9)), running(cam)),
			},
			req:  Request{Name: cam},
			want: Result{Outcome: OK, OriginID: "o2", BaseURL: "http://o2.example.com:8081", Scheme: "http"},
		},
		{
			desc: "egress at max_bandwidth excluded",
			views: []cluster.OriginView{
				view(org("o1", capacity(0, 1e9), load(0, 1e9, 0)), running(cam)),
				view(org("o2", capacity(0, 1e9), load(0, 9e8, 0)), running(cam)),
			},
			req:  Request{Name: cam},
			want: Result{Outcome: OK, OriginID: "o2", BaseURL: "http://o2.example.com:8081", Scheme: "http"},
		},
		{
			desc:  "every origin full is unavailable",
			views: []cluster.OriginView{view(org("o1", capacity(10, 0), load(11, 0, 0)), running(cam))},
			req:   Request{Name: cam},
			want:  Result{Outcome: Unavailable},
		},
		{
			desc:  "zero capacity means unlimited",
			views: []cluster.OriginView{view(org("o1", capacity(0, 0), load(1e6, 1e12, 0.99)), running(cam))},
			req:   Request{Name: cam},
			want:  Result{Outcome: OK, OriginID: "o1", BaseURL: "http://o1.example.com:8081", Scheme: "http"},
		},
		{
			desc: "secure request keeps https",
			views: []cluster.OriginView{view(org("o1", public(
				"http", "http://o1:8081", "https", "https://o1:8443")), running(cam))},
			req:  Request{Name: cam, Secure: true},
			want: Result{Outcome: OK, OriginID: "o1", BaseURL: "https://o1:8443", Scheme: "https"},
		},
		{
			desc: "plain request keeps http",
			views: []cluster.OriginView{view(org("o1", public(
				"http", "http://o1:8081", "https", "https://o1:8443")), running(cam))},
			req:  Request{Name: cam},
			want: Result{Outcome: OK, OriginID: "o1", BaseURL: "http://o1:8081", Scheme: "http"},
		},
		{
			desc:  "secure request falls back to http",
			views: []cluster.OriginView{view(org("o1", public("http", "http://o1:8081")), running(cam))},
			req:   Request{Name: cam, Secure: true},
			want:  Result{Outcome: OK, OriginID: "o1", BaseURL: "http://o1:8081", Scheme: "http"},
		},
		{
			desc:  "plain request falls back to https",
			views: []cluster.OriginView{view(org("o1", public("https", "https://o1:8443")), running(cam))},
			req:   Request{Name: cam},
			want:  Result{Outcome: OK, OriginID: "o1", BaseURL: "https://o1:8443", Scheme: "https"},
		},
		{
			desc: "rtsps kept for a secure rtsp request",
			views: []cluster.OriginView{view(org("o1", public(
				"rtsp", "rtsp://o1:8555", "rtsps", "rtsps://o1:8322")), running(cam))},
			req:  Request{Name: cam, Proto: ProtoRTSP, Secure: true},
			want: Result{Outcome: OK, OriginID: "o1", BaseURL: "rtsps://o1:8322", Scheme: "rtsps"},
		},
		{
			desc: "rtmp falls back to rtmps",
			views: []cluster.OriginView{view(org("o1", public(
				"http", "http://o1:8081", "rtmps", "rtmps://o1:1443")), running(cam))},
			req:  Request{Name: cam, Proto: ProtoRTMP},
			want: Result{Outcome: OK, OriginID: "o1", BaseURL: "rtmps://o1:1443", Scheme: "rtmps"},
		},
		{
			desc: "origin without a URL for the protocol excluded",
			views: []cluster.OriginView{
				view(org("o1", public("http", "http://o1:8081", "rtsp", "rtsp://o1:8555")), running(cam)),
				view(org("o2", public("rtmp", "rtmp://o2:1936")), running(cam)),
			},
			req:  Request{Name: cam, Proto: ProtoRTMP},
			want: Result{Outcome: OK, OriginID: "o2", BaseURL: "rtmp://o2:1936", Scheme: "rtmp"},
		},
		{
			desc:  "no origin offers the protocol is unavailable",
			views: []cluster.OriginView{view(org("o1"), running(cam))},
			req:   Request{Name: cam, Proto: ProtoRTMP},
			want:  Result{Outcome: Unavailable},
		},
		{
			desc:  "invalid protocol is unavailable",
			views: []cluster.OriginView{view(org("o1"), running(cam))},
			req:   Request{Name: cam, Proto: 7},
			want:  Result{Outcome: Unavailable},
		},
		{
			desc:  "trailing slash of a public URL is dropped",
			views: []cluster.OriginView{view(org("o1", public("http", "http://o1:8081/")), running(cam))},
			req:   Request{Name: cam},
			want:  Result{Outcome: OK, OriginID: "o1", BaseURL: "http://o1:8081", Scheme: "http"},
		},
		{
			desc: "public URL that is not a bare base URL is never used",
			views: []cluster.OriginView{view(org("o1", public(
				"http", "http://evil.example.com/x?y", "https", "http://wrong-scheme:1")), running(cam))},
			req:  Request{Name: cam},
			want: Result{Outcome: Unavailable},
		},
		{
			desc:  "name matching is exact",
			views: []cluster.OriginView{view(org("o1"), running("Live/Cam1", "live/cam1/"))},
			req:   Request{Name: cam},
			want:  Result{Outcome: NotFound},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			tb := table(tc.views...)
			// The route is TestRoute's: these rules are about which origin.
			noRoute := func(r Result) Result { r.Route, r.Spilled = 0, false; return r }
			if got := noRoute(tb.Resolve(tc.req)); got != tc.want {
				t.Errorf("Resolve(%+v) = %+v, want %+v", tc.req, got, tc.want)
			}
			// Explain must always agree with Resolve.
			if got := noRoute(tb.Explain(tc.req).Result); got != tc.want {
				t.Errorf("Explain(%+v).Result = %+v, want %+v", tc.req, got, tc.want)
			}
		})
	}
}

func threeUp(name string, opts ...func(*cluster.Origin)) *Table {
	return table(
		view(org("o1", opts...), running(name)),
		view(org("o2", opts...), running(name)),
		view(org("o3", opts...), running(name)),
	)
}

func TestStickiness(t *testing.T) {
	t.Parallel()
	tb := threeUp("live/cam1", util(0.3))
	for c := range 20 {
		req := Request{Name: "live/cam1", Client: fmt.Sprintf("192.0.2.%d", c)}
		first := tb.Resolve(req)
		if first.Outcome != OK {
			t.Fatalf("%+v: %v", req, first.Outcome)
		}
		for range 1000 {
			if got := tb.Resolve(req); got != first {
				t.Fatalf("client %s moved from %s to %s", req.Client, first.OriginID, got.OriginID)
			}
		}
		// A fresh table with origins added in another order (as another gateway) agrees.
		other := table(
			view(org("o3", util(0.3)), running("live/cam1")),
			view(org("o1", util(0.3)), running("live/cam1")),
			view(org("o2", util(0.3)), running("live/cam1")),
		)
		if got := other.Resolve(req); got != first {
			t.Fatalf("another table chose %s, this one %s", got.OriginID, first.OriginID)
		}
	}
}

func TestSpread(t *testing.T) {
	t.Parallel()
	const clients = 3000
	for _, name := range []string{"live/cam1", "a", "news/hd"} {
		tb := threeUp(name, util(0.4))
		count := map[string]int{}
		for c := range clients {
			r := tb.Resolve(Request{Name: name, Client: fmt.Sprintf("198.51.%d.%d", c/256, c%256)})
			count[r.OriginID]++
		}
		for _, id := range []string{"o1", "o2", "o3"} {
			if share := float64(count[id]) / clients; share < 0.20 || share > 0.45 {
				t.Errorf("%s: %s got %.1f%% of clients (%v)", name, id, 100*share, count)
			}
		}
	}
}

// topTwo returns the two running origins in rendezvous order for req, read from Explain.
func topTwo(t *testing.T, tb *Table, req Request) (string, string) {
	t.Helper()
	ex := tb.Explain(req)
	if len(ex.Candidates) < 2 || ex.Candidates[0].Rank != 1 || ex.Candidates[1].Rank != 2 {
		t.Fatalf("explain: %+v", ex)
	}
	return ex.Candidates[0].OriginID, ex.Candidates[1].OriginID
}

func TestPowerOfTwoWithHysteresis(t *testing.T) {
	t.Parallel()
	const name = "live/cam1"
	req := Request{Name: name, Client: "203.0.113.9"}
	first, second := topTwo(t, threeUp(name), req)
	third := map[string]string{"o1o2": "o3", "o2o1": "o3", "o1o3": "o2", "o3o1": "o2", "o2o3": "o1", "o3o2": "o1"}[first+second]

	build := func(opts Options, u map[string]float64) *Table {
		tb := New(opts)
		for _, id := range []string{"o1", "o2", "o3"} {
			tb.PutOrigin(org(id, util(u[id])))
			tb.PutStreams(id, running(name))
		}
		return tb
	}
	tests := []struct {
		desc string
		opts Options
		u    map[string]float64
		want string
	}{
		{"equal load keeps the first", Options{Hysteresis: DefaultHysteresis}, map[string]float64{first: 0.5, second: 0.5, third: 0.5}, first},
		{"second lower within the margin keeps the first", Options{Hysteresis: DefaultHysteresis}, map[string]float64{first: 0.5, second: 0.45, third: 0.5}, first},
		{"second lower by more than the margin takes it", Options{Hysteresis: DefaultHysteresis}, map[string]float64{first: 0.5, second: 0.35, third: 0.5}, second},
		{"second more loaded keeps the first", Options{Hysteresis: DefaultHysteresis}, map[string]float64{first: 0.3, second: 0.9, third: 0}, first},
		{"third is never asked even when idle", Options{Hysteresis: DefaultHysteresis}, map[string]float64{first: 0.9, second: 0.9, third: 0}, first},
		{"wider margin keeps the first", Options{Hysteresis: 0.3}, map[string]float64{first: 0.5, second: 0.35, third: 0.5}, first},
		{"wider margin exceeded takes the second", Options{Hysteresis: 0.3}, map[string]float64{first: 0.7, second: 0.35, third: 0.5}, second},
		{"zero margin: plain two choices", Options{}, map[string]float64{first: 0.5, second: 0.49, third: 0.5}, second},
		{"negative margin: plain two choices", Options{Hysteresis: -1}, map[string]float64{first: 0.5, second: 0.49, third: 0.5}, second},
		{"cpu counts as utilization", Options{Hysteresis: DefaultHysteresis}, nil, second},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			var tb *Table
			if tc.u == nil {
				tb = New(tc.opts)
				for _, id := range []string{"o1", "o2", "o3"} {
					cpu := 0.1
					if id == first {
						cpu = 0.8
					}
					tb.PutOrigin(org(id, load(5, 5, cpu)))
					tb.PutStreams(id, running(name))
				}
			} else {
				tb = build(tc.opts, tc.u)
			}
			if got := tb.Resolve(req); got.OriginID != tc.want {
				t.Errorf("took %s, want %s (first %s, second %s): %s", got.OriginID, tc.want, first, second, tb.Explain(req).Reason)
			}
		})
	}
}

func TestShardPadding(t *testing.T) {
	// Shards sit on their own cache lines so readers of neighbouring shards do not collide.
	if n := unsafe.Sizeof(shard{}); n != 128 {
		t.Errorf("shard is %d bytes", n)
	}
}

func TestOnDemandRendezvousOnName(t *testing.T) {
	t.Parallel()
	tb := New(Options{})
	ids := []string{"o1", "o2", "o3", "o4"}
	var names []string
	for i := range 400 {
		names = append(names, fmt.Sprintf("vod/film%d", i))
	}
	for _, id := range ids {
		tb.PutOrigin(org(id, util(0.1)))
		tb.PutStreams(id, ondemand(names...))
	}
	perOrigin := map[string]int{}
	for _, name := range names {
		want := tb.Resolve(Request{Name: name, Client: "x"})
		if want.Outcome != OK {
			t.Fatalf("%s: %v", name, want.Outcome)
		}
		perOrigin[want.OriginID]++
		for c := range 50 {
			if got := tb.Resolve(Request{Name: name, Client: fmt.Sprint("client-", c)}); got.OriginID != want.OriginID {
				t.Fatalf("%s: client %d got %s, client x %s: ondemand must not depend on the client", name, c, got.OriginID, want.OriginID)
			}
		}
	}
	// Different names still spread the pulls.
	for _, id := range ids {
		if n := perOrigin[id]; n < 50 || n > 150 {
			t.Errorf("%s pulls %d of 400 names: %v", id, n, perOrigin)
		}
	}
	// Load does not move an ondemand choice (one origin pulls the source).
	name := names[0]
	chosen := tb.Resolve(Request{Name: name}).OriginID
	tb.PutOrigin(org(chosen, util(0.95)))
	if got := tb.Resolve(Request{Name: name}).OriginID; got != chosen {
		t.Errorf("ondemand moved with load: %s -> %s", chosen, got)
	}
	// The chosen one becoming ineligible hands the name to the next in rendezvous order.
	tb.PutOrigin(org(chosen, draining))
	if got := tb.Resolve(Request{Name: name}); got.Outcome != OK || got.OriginID == chosen {
		t.Errorf("after draining %s: %+v", chosen, got)
	}
}

func TestHashIsFNV1aWithSplitmix(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "a", "live/cam1", "ünïcode/ストリーム"} {
		h := fnv.New64a()
		h.Write([]byte(s))
		if got, want := fnvAdd(fnvOffset, s), h.Sum64(); got != want {
			t.Errorf("fnvAdd(%q) = %x, hash/fnv says %x", s, got, want)
		}
	}
	// Pinned values: changing the hash makes gateways of different versions disagree.
	nk, ck := keys("live/cam1", "10.0.0.1")
	if nk != 0xa119ce9e5395f2c0 || ck != 0x8cec66280f4126ba {
		t.Errorf("keys = %#x, %#x", nk, ck)
	}
	if got := score(ck, idHash("o1")); got != 0xf7ccfb084d784d07 {
		t.Errorf("score = %#x", got)
	}
}
