package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/cli"
	"github.com/peergate/peergate/internal/redistest"
)

// An origin is ready only while its registry writes succeed: 503 one TTL after Redis went
// away (gateways stop finding it then), with the write age growing in the metrics, and
// ready again once Redis is back and the record is rewritten.
func TestRunReadyzFollowsRegistryWrites(t *testing.T) {
	rs := redistest.Standalone(t)
	logs := &cli.LogSink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, "", []string{
			"PEERGATE_CLUSTER_KEY=" + testKey,
			"PEERGATE_REDIS_URL=" + rs.URL(),
			"PEERGATE_ID=edge-ready",
			"PEERGATE_LISTEN_ADMIN=127.0.0.1:0",
			"PEERGATE_LISTEN_HTTP=127.0.0.1:0",
			"PEERGATE_LISTEN_RTSP=",
			"PEERGATE_LISTEN_RTMP=",
			"PEERGATE_HEARTBEAT_INTERVAL=100ms",
			"PEERGATE_HEARTBEAT_TTL=500ms",
			"PEERGATE_DRAIN_TIMEOUT=0s",
			"PEERGATE_LOG_FORMAT=json",
		}, logs)
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("run did not return after cancel")
		}
	}()
	adminAddr := logs.Addr(t, "admin")
	get := func(path string) (int, string) {
		res, err := http.Get("http://" + adminAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	wait := func(what string, cond func(int, string) bool) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			st, body := get("/readyz")
			if cond(st, body) {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("readyz never %s: last %d %q", what, st, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("ready", func(st int, _ string) bool { return st == http.StatusOK })
	if _, m := get("/metrics"); !strings.Contains(m, "peergate_origin_registry_write_age_seconds ") {
		t.Fatal("no write-age metric")
	}

	rs.Kill()
	tKill := time.Now()
	body := wait("503 after a TTL without writes", func(st int, body string) bool {
		return st == http.StatusServiceUnavailable && strings.Contains(body, "no successful registry write")
	})
	t.Logf("503 %s after Redis died: %q", time.Since(tKill).Round(10*time.Millisecond), strings.TrimSpace(body))
	if _, m := get("/metrics"); !strings.Contains(m, "peergate_origin_registered 1") {
		t.Error("peergate_origin_registered dropped; it records the first registration")
	}

	rs.Restart()
	wait("ready again", func(st int, _ string) bool { return st == http.StatusOK })
}
