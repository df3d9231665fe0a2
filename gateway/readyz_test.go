package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/redistest"
)

// registry.max_staleness end to end: with Redis away the gateway stays ready but says it is
// degraded (body and metric), answers 503 naming the key once the copy is older than the
// bound, and is plainly ready again when Redis returns. Its log stays JSON throughout,
// go-redis's own messages included.
func TestRunReadyzMaxStaleness(t *testing.T) {
	rs := redistest.Standalone(t)
	logs, stop := startRun(t,
		"PEERGATE_CLUSTER_KEY="+testKey,
		"PEERGATE_REDIS_URL="+rs.URL(),
		"PEERGATE_LISTEN_HTTP=127.0.0.1:0",
		"PEERGATE_LISTEN_ADMIN=127.0.0.1:0",
		"PEERGATE_REGISTRY_MAX_STALENESS=2s",
	)
	adminAddr := logs.Addr(t, "admin")
	c := noRedirect()
	readyz := func() (int, string) { st, body, _ := get(t, c, "http://"+adminAddr+"/readyz"); return st, body }
	waitReadyz := func(what string, cond func(int, string) bool) (int, string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			st, body := readyz()
			if cond(st, body) {
				return st, body
			}
			if time.Now().After(deadline) {
				t.Fatalf("readyz never %s: last %d %q", what, st, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitReadyz("ready", func(st int, body string) bool { return st == http.StatusOK && body == "ready\n" })

	rs.Kill()
	_, body := waitReadyz("degraded", func(st int, body string) bool {
		if st != http.StatusOK && !strings.Contains(body, "registry.max_staleness") {
			t.Fatalf("readyz %d %q before the copy was degraded long", st, body)
		}
		return st == http.StatusOK && strings.HasPrefix(body, "ready: degraded: registry unreachable")
	})
	t.Logf("degraded: %q", strings.TrimSpace(body))
	if _, m, _ := get(t, c, "http://"+adminAddr+"/metrics"); !strings.Contains(m, "\npeergate_registry_degraded 1\n") {
		t.Errorf("metrics while degraded lack peergate_registry_degraded 1")
	}
	_, body = waitReadyz("503 past max_staleness", func(st int, body string) bool {
		return st == http.StatusServiceUnavailable && strings.Contains(body, "longer than 2s") && strings.Contains(body, "registry.max_staleness")
	})
	t.Logf("past the bound: %q", strings.TrimSpace(body))

	rs.Restart()
	waitReadyz("ready again", func(st int, body string) bool { return st == http.StatusOK && body == "ready\n" })
	if _, m, _ := get(t, c, "http://"+adminAddr+"/metrics"); !strings.Contains(m, "\npeergate_registry_degraded 0\n") {
		t.Errorf("metrics after recovery lack peergate_registry_degraded 0")
	}
	stop()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	var fromLib int
	for _, l := range lines {
		var rec struct{ Msg, Component string }
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if rec.Component == "go-redis" {
			fromLib++
		}
	}
	t.Logf("%d log lines, all JSON; %d from go-redis", len(lines), fromLib)
}
