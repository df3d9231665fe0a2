package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"

	"github.com/peergate/peergate/internal/cli"
	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/internal/testcert"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/config"
	"github.com/peergate/peergate/shared/registry"
)

const testKey = "gateway-main-test-key-0123456789"

func noRedirect() *http.Client {
	return &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// startRun runs the gateway in-process with env (JSON logs added) and returns its log and a
// stop func that cancels it and fails the test unless run returns nil within 10 s.
func startRun(t *testing.T, env ...string) (*cli.LogSink, func()) {
	t.Helper()
	logs := &cli.LogSink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// The RTSP and RTMP listeners bind free loopback ports unless a test names them.
	env = append([]string{"PEERGATE_LISTEN_RTSP=127.0.0.1:0", "PEERGATE_LISTEN_RTMP=127.0.0.1:0"}, append(env, "PEERGATE_LOG_FORMAT=json")...)
	go func() { done <- run(ctx, "", env, logs) }()
	stopped := false
	stop := func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("run did not return after cancel")
		}
	}
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-done
		}
	})
	return logs, stop
}

func get(t *testing.T, c *http.Client, url string) (int, string, http.Header) {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header
}

// The binary's wiring, end to end against a real redis-server: config from the environment,
// listeners on :0 logged, readiness after the first snapshot, a redirect, metrics, the API, and a clean stop.
func TestRunWiring(t *testing.T) {
	rs := redistest.Standalone(t)
	logs, stop := startRun(t,
		"PEERGATE_CLUSTER_KEY="+testKey,
		"PEERGATE_REDIS_URL="+rs.URL(),
		"PEERGATE_LISTEN_HTTP=127.0.0.1:0",
		"PEERGATE_LISTEN_ADMIN=127.0.0.1:0",
		"UNRELATED=1",
	)
	httpAddr, adminAddr := logs.Addr(t, "http"), logs.Addr(t, "admin")
	c := noRedirect()

	// Ready only after the first snapshot; an empty registry is a snapshot too.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, body, _ := get(t, c, "http://"+adminAddr+"/readyz")
		if st == 200 {
			break
		}
		if !strings.Contains(body, "no registry snapshot yet") || time.Now().After(deadline) {
			t.Fatalf("readyz: %d %q", st, body)
		}
		time.Sleep(20 * time.Millisecond)
	}

	client, err := registry.Dial(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	reg, err := registry.NewRegistrar(client, testKey, cluster.Origin{
		ID: "o1", Public: cluster.Public{"http": "http://o1.invalid:8081"},
	}, registry.RegistrarOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reg.SetStreams([]cluster.Stream{{Name: "live/demo", State: cluster.StreamRunning}})
	if err := reg.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	want := "http://o1.invalid:8081/live/demo/index.m3u8?token=abc"
	deadline = time.Now().Add(5 * time.Second)
	for {
		st, _, h := get(t, c, "http://"+httpAddr+"/live/demo/index.m3u8?token=abc")
		if st == http.StatusFound && h.Get("Location") == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redirect: %d %q, want 302 %q", st, h.Get("Location"), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, _, _ := get(t, c, "http://"+httpAddr+"/nope/index.m3u8"); st != http.StatusNotFound {
		t.Fatalf("unknown stream: %d", st)
	}

	// The RTMP listener is wired to the same table: an unknown name is StreamNotFound.
	rtmpURL, _ := url.Parse("rtmp://" + logs.Addr(t, "rtmp") + "/nope/x")
	rc := &gortmplib.Client{URL: rtmpURL}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = rc.Initialize(ctx)
	cancel()
	if err == nil {
		rc.Close()
		t.Fatal("rtmp play of an unknown name succeeded")
	}
	if !strings.Contains(err.Error(), "NetStream.Play.StreamNotFound") {
		t.Fatalf("rtmp play of an unknown name: %v", err)
	}

	_, metrics, _ := get(t, c, "http://"+adminAddr+"/metrics")
	for _, line := range []string{
		`peergate_gateway_redirects_total{outcome="ok",proto="http"}`,
		`peergate_gateway_redirects_total{outcome="not_found",proto="http"}`,
		`peergate_gateway_redirects_total{outcome="not_found",proto="rtmp"}`,
		"peergate_registry_origins 1",
		"peergate_registry_streams 1",
		"peergate_registry_connected 1",
		"peergate_registry_signature_failures_total 0",
		"peergate_registry_snapshot_age_seconds",
		"go_goroutines",
		`peergate_build_info{binary="gateway",version="dev"} 1`,
	} {
		if !strings.Contains(metrics, line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	st, body, _ := get(t, c, "http://"+adminAddr+"/api/v1/explain?name=live/demo&client=10.0.0.1")
	if st != 200 || !strings.Contains(body, `"origin_id": "o1"`) || !strings.Contains(body, `"outcome": "ok"`) {
		t.Fatalf("explain: %d %s", st, body)
	}
	if st, body, _ := get(t, c, "http://"+adminAddr+"/api/v1/origins"); st != 200 || !strings.Contains(body, `"id": "o1"`) {
		t.Fatalf("origins: %d %s", st, body)
	}

	stop()
	if _, err := http.Get("http://" + httpAddr + "/live/demo/index.m3u8"); err == nil {
		t.Fatal("http listener still answers after run returned")
	}
}

func TestRunConfigErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ env, want string }{
		{"PEERGATE_LOG_LEVEL=info", "cluster_key: required"},
		{"PEERGATE_CLUSTER_KEY=" + testKey + "\x00PEERGATE_LISTN_HTTP=:1", "PEERGATE_LISTN_HTTP: unknown variable"},
		{"PEERGATE_CLUSTER_KEY=" + testKey + "\x00PEERGATE_LISTEN_HTTP=127.0.0.1:-5", "listen.http:"},
	}
	for _, ca := range cases {
		err := run(context.Background(), "", strings.Split(ca.env, "\x00"), io.Discard)
		if err == nil || !strings.Contains(err.Error(), ca.want) {
			t.Errorf("%q: err = %v, want %q", ca.env, err, ca.want)
		}
	}
}

// listen.https serves the same redirects over TLS and keeps https when the origin offers it.
func TestRunHTTPS(t *testing.T) {
	rs := redistest.Standalone(t)
	certFile, keyFile := testcert.New(t).WriteFiles(t)
	logs, stop := startRun(t,
		"PEERGATE_CLUSTER_KEY="+testKey,
		"PEERGATE_REDIS_URL="+rs.URL(),
		"PEERGATE_LISTEN_HTTP=127.0.0.1:0",
		"PEERGATE_LISTEN_HTTPS=127.0.0.1:0",
		"PEERGATE_TLS_CERT_FILE="+certFile,
		"PEERGATE_TLS_KEY_FILE="+keyFile,
		"PEERGATE_LISTEN_ADMIN=",
	)
	httpAddr, httpsAddr := logs.Addr(t, "http"), logs.Addr(t, "https")

	client, err := registry.Dial(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, o := range []cluster.Origin{
		{ID: "both", Public: cluster.Public{"http": "http://both.invalid:8081", "https": "https://both.invalid:8443"}},
		{ID: "plain", Public: cluster.Public{"http": "http://plain.invalid:8081"}},
	} {
		reg, err := registry.NewRegistrar(client, testKey, o, registry.RegistrarOptions{})
		if err != nil {
			t.Fatal(err)
		}
		reg.SetStreams([]cluster.Stream{{Name: o.ID + "/cam", State: cluster.StreamRunning}})
		if err := reg.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	c := noRedirect()
	c.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	cases := []struct{ url, want string }{
		{"https://" + httpsAddr + "/both/cam/index.m3u8?t=1", "https://both.invalid:8443/both/cam/index.m3u8?t=1"},
		{"http://" + httpAddr + "/both/cam/index.m3u8?t=1", "http://both.invalid:8081/both/cam/index.m3u8?t=1"},
		// An origin without https: the secure request falls back to its http URL.
		{"https://" + httpsAddr + "/plain/cam/mpegts", "http://plain.invalid:8081/plain/cam/mpegts"},
	}
	for _, cs := range cases {
		deadline := time.Now().Add(5 * time.Second)
		for {
			st, _, h := get(t, c, cs.url)
			if st == http.StatusFound && h.Get("Location") == cs.want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d %q, want 302 %q", cs.url, st, h.Get("Location"), cs.want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stop()
}

// A listen.https without a readable certificate stops the start with an error naming the keys.
func TestRunHTTPSBadCert(t *testing.T) {
	err := run(context.Background(), "", []string{
		"PEERGATE_CLUSTER_KEY=" + testKey,
		"PEERGATE_LISTEN_HTTP=127.0.0.1:0",
		"PEERGATE_LISTEN_HTTPS=127.0.0.1:0",
		"PEERGATE_TLS_CERT_FILE=/nonexistent/cert.pem",
		"PEERGATE_TLS_KEY_FILE=/nonexistent/key.pem",
		"PEERGATE_LISTEN_ADMIN=",
	}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Fatalf("run = %v, want an error naming tls.cert_file", err)
	}
}

// Before its first registry snapshot the gateway does not know which names exist: it must
// answer 503 with Retry-After (try again), not 404 (no such stream), for as long as Redis is
// away, and answer normally once the snapshot is in.
func TestRunUnavailableBeforeSnapshot(t *testing.T) {
	rs := redistest.Standalone(t)
	rs.Kill()
	logs, stop := startRun(t,
		"PEERGATE_CLUSTER_KEY="+testKey,
		"PEERGATE_REDIS_URL="+rs.URL(),
		"PEERGATE_LISTEN_HTTP=127.0.0.1:0",
		"PEERGATE_LISTEN_ADMIN=127.0.0.1:0",
	)
	httpAddr, adminAddr := logs.Addr(t, "http"), logs.Addr(t, "admin")
	c := noRedirect()
	if st, _, _ := get(t, c, "http://"+adminAddr+"/readyz"); st != http.StatusServiceUnavailable {
		t.Fatalf("readyz with Redis away: %d", st)
	}
	st, _, h := get(t, c, "http://"+httpAddr+"/live/demo/index.m3u8")
	if st != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("before the first snapshot: %d (Retry-After %q), want 503 with Retry-After", st, h.Get("Retry-After"))
	}

	rs.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, _, _ := get(t, c, "http://"+httpAddr+"/live/demo/index.m3u8")
		if st == http.StatusNotFound {
			break
		}
		if st != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("after Redis came back: %d, want 404 for an unknown stream", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, body, _ := get(t, c, "http://"+adminAddr+"/readyz"); st != http.StatusOK || body != "ready\n" {
		t.Fatalf("readyz with Redis up: %d %q", st, body)
	}

	// Redis away after the first snapshot: still ready (the last copy is served), and readyz says so.
	rs.Kill()
	deadline = time.Now().Add(15 * time.Second)
	for {
		st, body, _ := get(t, c, "http://"+adminAddr+"/readyz")
		if st != http.StatusOK {
			t.Fatalf("readyz with Redis away after a snapshot: %d %q, want 200", st, body)
		}
		if strings.Contains(body, "registry unreachable") && strings.Contains(body, "serving the last copy") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz never mentioned the unreachable registry: %q", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
}

// Every listen.* key the gateway's config knows is served: pointing it at a busy port stops
// the start with an error naming the key. A key the binary silently ignored would start fine.
func TestRunServesEveryListenKey(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	certFile, keyFile := testcert.New(t).WriteFiles(t)
	var keys []string
	for env, path := range config.EnvNames(&config.Gateway{}) {
		if strings.HasPrefix(path, "listen.") {
			keys = append(keys, env)
		}
	}
	if len(keys) < 5 {
		t.Fatalf("listen keys: %v", keys)
	}
	for _, key := range keys {
		path := config.EnvNames(&config.Gateway{})[key]
		env := []string{"PEERGATE_CLUSTER_KEY=" + testKey, "PEERGATE_REDIS_URL=redis://127.0.0.1:1/0",
			"PEERGATE_TLS_CERT_FILE=" + certFile, "PEERGATE_TLS_KEY_FILE=" + keyFile}
		for _, other := range keys {
			env = append(env, other+"=127.0.0.1:0")
		}
		env = append(env, key+"="+busy.Addr().String())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := run(ctx, "", env, io.Discard)
		cancel()
		if err == nil || !strings.Contains(err.Error(), path+":") {
			t.Errorf("%s on a busy port: run = %v, want an error naming %s", path, err, path)
		}
	}
}
