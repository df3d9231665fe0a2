package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/cli"
	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/config"
	"github.com/peergate/peergate/shared/registry"
)

const testKey = "origin-main-test-key-0123456789"

// viewSink is the cluster as a gateway's Watcher reports it.
type viewSink struct {
	mu      sync.Mutex
	origins map[string]cluster.Origin
	streams map[string]map[string]string // origin -> name -> state
}

// testAdminToken is the admin.token of TestRunRegistersAndDrains' origin.
const testAdminToken = "origin-admin-token-0123"

func newViewSink() *viewSink {
	return &viewSink{origins: map[string]cluster.Origin{}, streams: map[string]map[string]string{}}
}

func (v *viewSink) ReplaceAll(all []registry.OriginView) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.origins, v.streams = map[string]cluster.Origin{}, map[string]map[string]string{}
	for _, o := range all {
		v.putOrigin(o.Origin)
		v.putStreams(o.Origin.ID, o.Streams)
	}
}

func (v *viewSink) putOrigin(o cluster.Origin) {
	v.origins[o.ID] = o
}

func (v *viewSink) putStreams(id string, list []cluster.Stream) {
	m := map[string]string{}
	for _, s := range list {
		m[s.Name] = s.State
	}
	v.streams[id] = m
}

func (v *viewSink) PutOrigin(o cluster.Origin) { v.mu.Lock(); v.putOrigin(o); v.mu.Unlock() }
func (v *viewSink) PutStreams(id string, list []cluster.Stream) {
	v.mu.Lock()
	v.putStreams(id, list)
	v.mu.Unlock()
}

func (v *viewSink) ApplyStreams(id string, changes []cluster.StreamChange) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.streams[id] == nil {
		v.streams[id] = map[string]string{}
	}
	for _, c := range changes {
		if c.Removed {
			delete(v.streams[id], c.Name)
		} else {
			v.streams[id][c.Name] = c.State
		}
	}
}

func (v *viewSink) DropOrigin(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.origins, id)
	delete(v.streams, id)
}

// waitFor polls cond under the sink's lock.
func (v *viewSink) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v.mu.Lock()
		ok := cond()
		v.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			v.mu.Lock()
			defer v.mu.Unlock()
			t.Fatalf("%s: not within 10s; origins %+v streams %+v", what, v.origins, v.streams)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunRegistersAndDrains(t *testing.T) {
	rs := redistest.Standalone(t)
	cfgPath := filepath.Join(t.TempDir(), "origin.yaml")
	if err := os.WriteFile(cfgPath, []byte(`
id: edge-1
private: 10.0.0.5
capacity: {max_clients: 100}
streams:
  - name: demo
  - name: live/cam1
    state: ondemand
  - name: looped
    source: testdata/demo.ts
  - name: pulled
    source: rtsp://127.0.0.1:1/nothing
`), 0o600); err != nil {
		t.Fatal(err)
	}

	client, err := registry.Dial(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	view := newViewSink()
	wctx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		_ = registry.NewWatcher(client, testKey, view, registry.WatcherOptions{}).Run(wctx)
	}()
	defer func() { stopWatch(); <-watchDone }()

	logs := &cli.LogSink{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, cfgPath, []string{
			"PEERGATE_CLUSTER_KEY=" + testKey,
			"PEERGATE_ADMIN_TOKEN=" + testAdminToken,
			"PEERGATE_REDIS_URL=" + rs.URL(),
			"PEERGATE_PUBLIC_HTTP=http://edge-1.invalid:8081",
			"PEERGATE_LISTEN_ADMIN=127.0.0.1:0",
			"PEERGATE_LISTEN_HTTP=127.0.0.1:0",
			"PEERGATE_LISTEN_RTSP=127.0.0.1:0",
			"PEERGATE_LISTEN_RTSP_UDP=127.0.0.1:0",
			"PEERGATE_LISTEN_RTMP=127.0.0.1:0",
			"PEERGATE_HEARTBEAT_INTERVAL=100ms",
			"PEERGATE_DRAIN_TIMEOUT=1s", // the HLS viewer below stays counted for its session timeout
			"PEERGATE_HEARTBEAT_TTL=500ms",
			"PEERGATE_LOG_FORMAT=json",
		}, logs)
	}()
	adminAddr := logs.Addr(t, "admin")
	httpAddr := logs.Addr(t, "http")
	for _, l := range []string{"rtsp", "rtmp"} {
		logs.Addr(t, l)
	}

	// Static entries as configured, the URL source ondemand, the looped file running once its first key frame is in.
	view.waitFor(t, "origin registered with its streams", func() bool {
		o, ok := view.origins["edge-1"]
		s := view.streams["edge-1"]
		return ok && o.State == cluster.StateUp && s["demo"] == "running" && s["live/cam1"] == "ondemand" &&
			s["looped"] == "running" && s["pulled"] == "ondemand" && len(s) == 4
	})
	view.mu.Lock()
	rec := view.origins["edge-1"]
	view.mu.Unlock()
	if rec.Private != "10.0.0.5" || rec.Public["http"] != "http://edge-1.invalid:8081" || rec.Public["rtsp"] != "rtsp://127.0.0.1:8555" ||
		rec.Capacity.MaxClients != 100 || rec.Epoch == 0 || rec.StartedAt.IsZero() || !strings.HasPrefix(rec.Software, "peergate-origin/") ||
		rec.TTLMillis != 500 || rec.Load.Clients != 0 || rec.Load.CPU < 0 || rec.Load.CPU > 1 {
		t.Fatalf("record = %+v", rec)
	}
	res, err := http.Get("http://" + httpAddr + "/looped/index.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	playlist, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !bytes.Contains(playlist, []byte("#EXTM3U")) {
		t.Fatalf("looped playlist: %s\n%s", res.Status, playlist)
	}
	res, err = http.Get("http://" + httpAddr + "/demo/index.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Fatalf("a static announcement has no media: %s", res.Status)
	}
	// The HLS viewer reaches the registry as load with the next heartbeat.
	view.waitFor(t, "HLS viewer counted in the origin's load", func() bool { return view.origins["edge-1"].Load.Clients == 1 })

	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz: %d", res.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Streams announced at run time through the admin API reach the registry.
	// Without the admin token the change is refused; with it, it goes through.
	req, _ := http.NewRequest(http.MethodPut, "http://"+adminAddr+"/api/v1/streams/live/new", strings.NewReader(`{"state":"running"}`))
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("PUT stream without a token: %s", res.Status)
	}
	req, _ = http.NewRequest(http.MethodPut, "http://"+adminAddr+"/api/v1/streams/live/new", strings.NewReader(`{"state":"running"}`))
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		t.Fatalf("PUT stream: %s", res.Status)
	}
	view.waitFor(t, "stream added at run time", func() bool { return view.streams["edge-1"]["live/new"] == "running" })
	res, err = http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.Contains(metrics, []byte("peergate_origin_registered 1")) || !bytes.Contains(metrics, []byte("peergate_origin_draining 0")) ||
		!bytes.Contains(metrics, []byte(`peergate_origin_clients{proto="hls"} 1`)) || !bytes.Contains(metrics, []byte(`peergate_origin_egress_bytes_total{proto="rtmp"} 0`)) ||
		!bytes.Contains(metrics, []byte("peergate_origin_streams 1")) {
		t.Fatalf("metrics:\n%s", metrics)
	}

	// SIGTERM: draining is published, then the origin deregisters and run returns nil.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	view.waitFor(t, "origin gone", func() bool { _, ok := view.origins["edge-1"]; return !ok })
	keys, err := client.Keys(context.Background(), "*edge-1*").Result()
	if err != nil || len(keys) != 0 {
		t.Fatalf("keys left after deregister: %v %v", keys, err)
	}
}

func TestWaitViewers(t *testing.T) {
	t.Parallel()
	log := discardLogger()
	start := time.Now()
	waitViewers(func() int64 { return 0 }, time.Minute, log)
	if time.Since(start) > time.Second {
		t.Fatal("no viewers: must not wait")
	}
	var mu sync.Mutex
	n := int64(2)
	go func() {
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		n = 0
		mu.Unlock()
	}()
	start = time.Now()
	waitViewers(func() int64 { mu.Lock(); defer mu.Unlock(); return n }, time.Minute, log)
	if d := time.Since(start); d < 250*time.Millisecond || d > 10*time.Second {
		t.Fatalf("waited %s for viewers that left after 300ms", d)
	}
	start = time.Now()
	waitViewers(func() int64 { return 1 }, 200*time.Millisecond, log)
	if d := time.Since(start); d < 200*time.Millisecond || d > 10*time.Second {
		t.Fatalf("drain timeout 200ms took %s", d)
	}
}

func TestRunConfigErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  []string
		want string
	}{
		{[]string{"PEERGATE_ID=o1"}, "cluster_key: required"},
		{[]string{"PEERGATE_ID=o1", "PEERGATE_CLUSTER_KEY=short"}, "cluster_key: must be at least 16 bytes"},
		{[]string{"PEERGATE_ID=o1", "PEERGATE_CLUSTER_KEY=" + testKey, "PEERGATE_HEARTBEAT_TTL=1s"}, "heartbeat.ttl:"},
	}
	for _, ca := range cases {
		err := run(context.Background(), "", ca.env, io.Discard)
		if err == nil || !strings.Contains(err.Error(), ca.want) {
			t.Errorf("%q: err = %v, want %q", ca.env, err, ca.want)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// A busy admin port stops the origin before it writes anything to the registry.
func TestRunAdminPortBusy(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = run(context.Background(), "", []string{
		"PEERGATE_ID=o1", "PEERGATE_CLUSTER_KEY=" + testKey,
		"PEERGATE_REDIS_URL=redis://127.0.0.1:1/0", // never contacted
		"PEERGATE_LISTEN_ADMIN=" + ln.Addr().String(),
		"PEERGATE_LISTEN_HTTP=127.0.0.1:0", "PEERGATE_LISTEN_RTSP=127.0.0.1:0", "PEERGATE_LISTEN_RTMP=127.0.0.1:0",
	}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "listen.admin:") {
		t.Fatalf("err = %v", err)
	}
}

// A missing clip or a busy media port stops the origin before it writes anything, naming the key.
func TestRunMediaStartErrors(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	missing := filepath.Join(t.TempDir(), "nope.ts")
	cfgPath := filepath.Join(t.TempDir(), "origin.yaml")
	if err := os.WriteFile(cfgPath, []byte("streams:\n  - name: a\n  - name: demo\n    source: "+missing+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{
		"PEERGATE_ID=o1", "PEERGATE_CLUSTER_KEY=" + testKey,
		"PEERGATE_REDIS_URL=redis://127.0.0.1:1/0", // never contacted
		"PEERGATE_LISTEN_ADMIN=127.0.0.1:0",
		"PEERGATE_LISTEN_HTTP=127.0.0.1:0", "PEERGATE_LISTEN_RTSP=127.0.0.1:0", "PEERGATE_LISTEN_RTMP=127.0.0.1:0",
	}
	cases := []struct {
		path string
		env  []string
		want string
	}{
		{cfgPath, nil, "streams[1].source: open " + missing},
		{"", []string{"PEERGATE_LISTEN_HTTP=" + busy}, "listen.http:"},
		{"", []string{"PEERGATE_LISTEN_RTSP=" + busy}, "listen.rtsp:"},
		{"", []string{"PEERGATE_LISTEN_RTMP=" + busy}, "listen.rtmp:"},
	}
	for _, ca := range cases {
		err := run(context.Background(), ca.path, append(append([]string(nil), base...), ca.env...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), ca.want) {
			t.Errorf("%q: err = %v, want %q", ca.env, err, ca.want)
		}
	}
}

// Every listen.* key the origin's config knows is served: pointing it at a busy port stops
// the start with an error naming the key (listen.rtsp_udp through listen.rtsp, which owns
// it). A key the binary silently ignored would start fine.
func TestRunServesEveryListenKey(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// An even UDP port held open, for listen.rtsp_udp.
	var udpBusy string
	for i := 0; i < 50 && udpBusy == ""; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		if pc.LocalAddr().(*net.UDPAddr).Port%2 == 0 {
			udpBusy = pc.LocalAddr().String()
		}
	}
	names := config.EnvNames(&config.Origin{})
	var keys []string
	for env, path := range names {
		if strings.HasPrefix(path, "listen.") {
			keys = append(keys, env)
		}
	}
	if len(keys) < 5 || udpBusy == "" {
		t.Fatalf("listen keys %v, busy udp %q", keys, udpBusy)
	}
	for _, key := range keys {
		path := names[key]
		env := []string{"PEERGATE_ID=o1", "PEERGATE_CLUSTER_KEY=" + testKey, "PEERGATE_REDIS_URL=redis://127.0.0.1:1/0"}
		for _, other := range keys {
			if other != key {
				env = append(env, other+"=127.0.0.1:0")
			}
		}
		want := path + ":"
		if path == "listen.rtsp_udp" {
			env, want = append(env, key+"="+udpBusy), "listen.rtsp:"
		} else {
			env = append(env, key+"="+busy.Addr().String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := run(ctx, "", env, io.Discard)
		cancel()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s on a busy port: run = %v, want an error naming %s", path, err, want)
		}
	}
}
