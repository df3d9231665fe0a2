package adminapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/shared/admin"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/registry"
)

func origin(id, state, http string) cluster.Origin {
	return cluster.Origin{
		ID: id, Epoch: 1, State: state, Public: cluster.Public{"http": http},
		StartedAt: time.Unix(1, 0).UTC(), TTLMillis: 3000,
	}
}

func startAPI(t *testing.T) string {
	t.Helper()
	tab := resolve.New(resolve.Options{})
	tab.ReplaceAll([]cluster.OriginView{
		{Origin: origin("o1", cluster.StateUp, "http://127.0.0.1:8081"), Streams: []cluster.Stream{
			{Name: "demo", State: cluster.StreamRunning},
		}},
		{Origin: origin("o2", cluster.StateDraining, "http://127.0.0.1:8082"), Streams: []cluster.Stream{
			{Name: "demo", State: cluster.StreamRunning}, {Name: "live/demo2", State: cluster.StreamOnDemand},
		}},
	})
	s := &admin.Server{Address: "127.0.0.1:0", Handlers: Handlers(tab)}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return "http://" + s.Addr().String()
}

func getJSON(t *testing.T, u string, v any) int {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: content type %q", u, ct)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", u, err)
	}
	return res.StatusCode
}

func TestOriginsAndStreams(t *testing.T) {
	t.Parallel()
	base := startAPI(t)
	var o struct {
		Origins []resolve.OriginInfo `json:"origins"`
	}
	if st := getJSON(t, base+"/api/v1/origins", &o); st != 200 {
		t.Fatalf("status %d", st)
	}
	if len(o.Origins) != 2 || o.Origins[0].Origin.ID != "o1" || o.Origins[1].Origin.State != "draining" ||
		o.Origins[1].Streams != 2 || o.Origins[0].Origin.Public["http"] != "http://127.0.0.1:8081" {
		t.Fatalf("origins = %+v", o.Origins)
	}
	var s struct {
		Streams []resolve.StreamInfo `json:"streams"`
	}
	getJSON(t, base+"/api/v1/streams", &s)
	if len(s.Streams) != 2 || s.Streams[0].Name != "demo" || len(s.Streams[0].Origins) != 2 ||
		s.Streams[1].Name != "live/demo2" || s.Streams[1].Origins[0].State != "ondemand" {
		t.Fatalf("streams = %+v", s.Streams)
	}
	getJSON(t, base+"/api/v1/streams?name=live/demo2", &s)
	if len(s.Streams) != 1 || s.Streams[0].Name != "live/demo2" {
		t.Fatalf("filtered streams = %+v", s.Streams)
	}
}

func TestExplain(t *testing.T) {
	t.Parallel()
	base := startAPI(t)
	cases := []struct {
		desc    string
		query   url.Values
		status  int
		outcome string
		origin  string
		errMsg  string
	}{
		{"running on o1, o2 draining", url.Values{"name": {"demo"}, "client": {"10.0.0.1"}}, 200, "ok", "o1", ""},
		{"default proto and client", url.Values{"name": {"demo"}}, 200, "ok", "o1", ""},
		{"only on draining", url.Values{"name": {"live/demo2"}}, 200, "unavailable", "", ""},
		{"unknown", url.Values{"name": {"nope"}}, 200, "not_found", "", ""},
		{"no name", url.Values{}, 400, "", "", "name: required"},
		{"bad name", url.Values{"name": {"../x"}}, 400, "", "", "name: not a valid stream name"},
		{"bad proto", url.Values{"name": {"demo"}, "proto": {"ftp"}}, 400, "", "", "proto: must be http, rtsp or rtmp"},
		{"bad secure", url.Values{"name": {"demo"}, "secure": {"maybe"}}, 400, "", "", "secure: must be true or false"},
	}
	for _, ca := range cases {
		var ex struct {
			Name   string `json:"name"`
			Reason string `json:"reason"`
			Result struct {
				Outcome  string `json:"outcome"`
				OriginID string `json:"origin_id"`
			} `json:"result"`
			Candidates []struct {
				OriginID string `json:"origin_id"`
			} `json:"candidates"`
			Error string `json:"error"`
		}
		st := getJSON(t, base+"/api/v1/explain?"+ca.query.Encode(), &ex)
		if st != ca.status || ex.Error != ca.errMsg {
			t.Errorf("%s: %d %q, want %d %q", ca.desc, st, ex.Error, ca.status, ca.errMsg)
			continue
		}
		if st != 200 {
			continue
		}
		if ex.Result.Outcome != ca.outcome || ex.Result.OriginID != ca.origin {
			t.Errorf("%s: result %+v, want origin %q", ca.desc, ex.Result, ca.origin)
		}
		if ex.Name != ca.query.Get("name") || ex.Reason == "" {
			t.Errorf("%s: %+v", ca.desc, ex)
		}
	}
}

func TestRegistryMetrics(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	reg := prometheus.NewRegistry()
	stats := registry.WatcherStats{Connected: true, LastSync: now.Add(-2 * time.Second), SignatureFailures: 4, Resyncs: 2}
	err := RegisterRegistryMetrics(reg, RegistryView{
		Stats: func() registry.WatcherStats { return stats },
		Size:  func() (int, int, int) { return 2, 3, 5 },
		Now:   func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `
# HELP peergate_registry_connected 1 while subscribed to the registry with a loaded snapshot.
# TYPE peergate_registry_connected gauge
peergate_registry_connected 1
# HELP peergate_registry_entries (stream, origin) entries in the index.
# TYPE peergate_registry_entries gauge
peergate_registry_entries 5
# HELP peergate_registry_origins Origins in the gateway's in-memory index.
# TYPE peergate_registry_origins gauge
peergate_registry_origins 2
# HELP peergate_registry_signature_failures_total Records, stream entries and events dropped for a bad signature.
# TYPE peergate_registry_signature_failures_total counter
peergate_registry_signature_failures_total 4
# HELP peergate_registry_snapshot_age_seconds Seconds since the last full snapshot (absent before the first).
# TYPE peergate_registry_snapshot_age_seconds gauge
peergate_registry_snapshot_age_seconds 2
# HELP peergate_registry_resyncs_total Full snapshots read (start, reconnect, anti-entropy).
# TYPE peergate_registry_resyncs_total counter
peergate_registry_resyncs_total 2
`
	names := []string{"peergate_registry_connected", "peergate_registry_entries", "peergate_registry_origins",
		"peergate_registry_signature_failures_total", "peergate_registry_snapshot_age_seconds", "peergate_registry_resyncs_total"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	// Before any contact, the age metrics are absent rather than a made-up number.
	stats = registry.WatcherStats{}
	if n, err := testutil.GatherAndCount(reg, "peergate_registry_staleness_seconds", "peergate_registry_snapshot_age_seconds"); err != nil || n != 0 {
		t.Fatalf("age metrics before contact: %d %v", n, err)
	}
}

// blockingView holds every Streams call until release is closed.
type blockingView struct {
	View
	entered chan struct{}
	release chan struct{}
}

func (b blockingView) Streams() []resolve.StreamInfo {
	b.entered <- struct{}{}
	<-b.release
	return nil
}

// Each API answer copies and encodes the whole index: only a few may be built at once, the
// rest get 503 at once instead of piling up copies (64 connections x a large cluster).
func TestInFlightLimit(t *testing.T) {
	t.Parallel()
	v := blockingView{View: resolve.New(resolve.Options{}), entered: make(chan struct{}), release: make(chan struct{})}
	s := &admin.Server{Address: "127.0.0.1:0", Handlers: Handlers(v)}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	base := "http://" + s.Addr().String()
	codes := make(chan int, maxInFlight)
	for range maxInFlight {
		go func() {
			res, err := http.Get(base + "/api/v1/streams")
			if err != nil {
				codes <- 0
				return
			}
			res.Body.Close()
			codes <- res.StatusCode
		}()
	}
	for range maxInFlight {
		select {
		case <-v.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("requests did not reach the view")
		}
	}
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(base + "/api/v1/streams")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("request beyond the limit: %d, want 503", res.StatusCode)
	}
	close(v.release)
	for range maxInFlight {
		if code := <-codes; code != http.StatusOK {
			t.Errorf("request within the limit: %d", code)
		}
	}
}

// explain with proto=rtmp says which RTMP clients are redirected and which relayed; other
// protocols carry no rtmp section.
func TestExplainRTMPPolicy(t *testing.T) {
	t.Parallel()
	s := &admin.Server{Address: "127.0.0.1:0", Handlers: HandlersWith(resolve.New(resolve.Options{}), NewRTMPPolicy("auto", []string{"SRS/*"}))}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c := &http.Client{Timeout: 5 * time.Second}
	for _, ca := range []struct {
		proto string
		want  map[string]any
	}{
		{"rtmp", map[string]any{"mode": "auto", "follow_flashver": []any{"SRS/*"},
			"redirect": NewRTMPPolicy("auto", nil).Redirect, "relay": NewRTMPPolicy("auto", nil).Relay}},
		{"http", nil},
	} {
		res, err := c.Get("http://" + s.Addr().String() + "/api/v1/explain?name=live/demo&proto=" + ca.proto)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		err = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 || body["name"] != "live/demo" {
			t.Fatalf("%s: %d %v %v", ca.proto, res.StatusCode, body, err)
		}
		got, _ := body["rtmp"].(map[string]any)
		if !reflect.DeepEqual(got, ca.want) {
			t.Errorf("%s: rtmp = %#v, want %#v", ca.proto, got, ca.want)
		}
	}
	for mode, redirect := range map[string]string{"redirect": "every client", "relay": "none"} {
		if p := NewRTMPPolicy(mode, nil); p.Redirect != redirect {
			t.Errorf("%s: redirect %q", mode, p.Redirect)
		}
	}
}

// TestExplainSpill: explain over HTTP shows spill_at, the relays of a name, the new relay a
// spilled viewer goes to, and why; streams marks the relay copies.
func TestExplainSpill(t *testing.T) {
	t.Parallel()
	tab := resolve.New(resolve.Options{SpillAt: 0.8})
	busy := func(o cluster.Origin, clients int64) cluster.Origin {
		o.Capacity.MaxClients, o.Load.Clients = 10, clients
		return o
	}
	tab.ReplaceAll([]cluster.OriginView{
		{Origin: busy(origin("own", cluster.StateUp, "http://127.0.0.1:8081"), 9), Streams: []cluster.Stream{{Name: "big", State: cluster.StreamRunning}}},
		{Origin: busy(origin("r1", cluster.StateUp, "http://127.0.0.1:8082"), 9), Streams: []cluster.Stream{{Name: "big", State: cluster.StreamRunning, Upstream: "own"}}},
		{Origin: busy(origin("o3", cluster.StateUp, "http://127.0.0.1:8083"), 1)},
	})
	s := &admin.Server{Address: "127.0.0.1:0", Handlers: Handlers(tab)}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	base := "http://" + s.Addr().String()
	var ex struct {
		SpillAt float64 `json:"spill_at"`
		Reason  string  `json:"reason"`
		Result  struct {
			OriginID string `json:"origin_id"`
		} `json:"result"`
		Candidates []struct {
			OriginID string `json:"origin_id"`
			Relay    bool   `json:"relay"`
			NewRelay bool   `json:"new_relay"`
			Chosen   bool   `json:"chosen"`
		} `json:"candidates"`
	}
	if st := getJSON(t, base+"/api/v1/explain?name=big", &ex); st != 200 {
		t.Fatalf("status %d", st)
	}
	if ex.SpillAt != 0.8 || ex.Result.OriginID != "o3" || !strings.Contains(ex.Reason, "spilled to new relay o3") {
		t.Fatalf("explain %+v", ex)
	}
	marks := map[string]string{}
	for _, c := range ex.Candidates {
		switch {
		case c.Relay:
			marks[c.OriginID] = "relay"
		case c.NewRelay && c.Chosen:
			marks[c.OriginID] = "new"
		}
	}
	if marks["r1"] != "relay" || marks["o3"] != "new" || marks["own"] != "" {
		t.Fatalf("candidates %+v", ex.Candidates)
	}
	var st struct {
		Streams []resolve.StreamInfo `json:"streams"`
	}
	getJSON(t, base+"/api/v1/streams?name=big", &st)
	if len(st.Streams) != 1 || len(st.Streams[0].Origins) != 2 || st.Streams[0].Origins[0].Relay || !st.Streams[0].Origins[1].Relay {
		t.Fatalf("streams %+v", st.Streams)
	}
}

// TestTree: /api/v1/tree nests each relay under the origin it pulls from, with state, load
// and fill on every node; streams names each relay's upstream; bad names get 400, unlisted
// ones 404, both as JSON errors.
func TestTree(t *testing.T) {
	t.Parallel()
	tab := resolve.New(resolve.Options{SpillAt: 0.8})
	busy := func(o cluster.Origin, clients int64) cluster.Origin {
		o.Capacity.MaxClients, o.Load.Clients = 4, clients
		return o
	}
	tab.ReplaceAll([]cluster.OriginView{
		{Origin: busy(origin("own", cluster.StateUp, "http://127.0.0.1:8081"), 4), Streams: []cluster.Stream{{Name: "live/big", State: cluster.StreamRunning}}},
		{Origin: busy(origin("r1", cluster.StateDraining, "http://127.0.0.1:8082"), 3), Streams: []cluster.Stream{{Name: "live/big", State: cluster.StreamRunning, Upstream: "own"}}},
		{Origin: busy(origin("r2", cluster.StateUp, "http://127.0.0.1:8083"), 1), Streams: []cluster.Stream{{Name: "live/big", State: cluster.StreamRunning, Upstream: "r1"}}},
	})
	s := &admin.Server{Address: "127.0.0.1:0", Handlers: Handlers(tab)}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	base := "http://" + s.Addr().String()
	type node struct {
		OriginID    string  `json:"origin_id"`
		OriginState string  `json:"origin_state"`
		Upstream    string  `json:"upstream"`
		Depth       int     `json:"depth"`
		Clients     int64   `json:"clients"`
		Fill        float64 `json:"fill"`
		Relays      []node  `json:"relays"`
	}
	var tr struct {
		Name     string `json:"name"`
		Owners   []node `json:"owners"`
		Detached []node `json:"detached"`
		Relays   int    `json:"relays"`
		Depth    int    `json:"depth"`
	}
	if st := getJSON(t, base+"/api/v1/tree?name=live/big", &tr); st != 200 {
		t.Fatalf("status %d", st)
	}
	if tr.Name != "live/big" || len(tr.Owners) != 1 || tr.Relays != 2 || tr.Depth != 2 || len(tr.Detached) != 0 {
		t.Fatalf("tree %+v", tr)
	}
	own := tr.Owners[0]
	if own.OriginID != "own" || own.Clients != 4 || own.Fill != 1 || len(own.Relays) != 1 {
		t.Fatalf("owner %+v", own)
	}
	r1 := own.Relays[0]
	if r1.OriginID != "r1" || r1.OriginState != "draining" || r1.Upstream != "own" || r1.Depth != 1 || r1.Fill != 0.75 || len(r1.Relays) != 1 {
		t.Fatalf("r1 %+v", r1)
	}
	if r2 := r1.Relays[0]; r2.OriginID != "r2" || r2.Upstream != "r1" || r2.Depth != 2 || r2.Clients != 1 {
		t.Fatalf("r2 %+v", r2)
	}
	var st struct {
		Streams []resolve.StreamInfo `json:"streams"`
	}
	getJSON(t, base+"/api/v1/streams?name=live/big", &st)
	if len(st.Streams) != 1 || st.Streams[0].Origins[2].Upstream != "r1" || st.Streams[0].Origins[0].Upstream != "" {
		t.Fatalf("streams %+v", st.Streams)
	}
	for q, want := range map[string]struct {
		status int
		msg    string
	}{
		"":              {400, "name: required"},
		"?name=../x":    {400, "name: not a valid stream name"},
		"?name=live/no": {404, "no origin lists the stream"},
	} {
		var e struct {
			Error string `json:"error"`
		}
		if code := getJSON(t, base+"/api/v1/tree"+q, &e); code != want.status || e.Error != want.msg {
			t.Errorf("tree%s: %d %q, want %d %q", q, code, e.Error, want.status, want.msg)
		}
	}
}
