package cli

import (
	"bytes"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/peergate/peergate/shared/admin"
)

func TestHealthcheckFollowsReadiness(t *testing.T) {
	var ready atomic.Bool
	srv := &admin.Server{Address: "127.0.0.1:0", Ready: func() error {
		if ready.Load() {
			return nil
		}
		return errors.New("no registry snapshot yet")
	}}
	if err := srv.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	env := []string{"PEERGATE_CLUSTER_KEY=healthcheck-test-cluster-key", "PEERGATE_LISTEN_ADMIN=" + srv.Addr().String()}
	for _, bin := range []string{"gateway", "origin"} {
		ready.Store(false)
		var out bytes.Buffer
		if code := Healthcheck(bin, nil, env, &out); code != 1 || !strings.Contains(out.String(), "503 not ready: no registry snapshot yet") {
			t.Errorf("%s not ready: exit %d, %q; want 1 and the reason", bin, code, out.String())
		}
		ready.Store(true)
		out.Reset()
		if code := Healthcheck(bin, nil, env, &out); code != 0 || !strings.Contains(out.String(), "200 ready") {
			t.Errorf("%s ready: exit %d, %q; want 0", bin, code, out.String())
		}
		out.Reset()
		if code := Healthcheck(bin, []string{"-path", "/healthz"}, env, &out); code != 0 || !strings.Contains(out.String(), "200 ok") {
			t.Errorf("%s -path /healthz: exit %d, %q; want 0", bin, code, out.String())
		}
	}
}

func TestHealthcheckFailsWithoutListener(t *testing.T) {
	srv := &admin.Server{Address: "127.0.0.1:0"}
	if err := srv.Initialize(); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr().String()
	srv.Close() // nothing listens there any more
	var out bytes.Buffer
	env := []string{"PEERGATE_CLUSTER_KEY=healthcheck-test-cluster-key", "PEERGATE_LISTEN_ADMIN=" + addr}
	if code := Healthcheck("gateway", []string{"-timeout", "2s"}, env, &out); code != 1 || !strings.Contains(out.String(), "refused") {
		t.Errorf("closed admin port: exit %d, %q; want 1 and connection refused", code, out.String())
	}
	out.Reset()
	if code := Healthcheck("gateway", nil, []string{"PEERGATE_CLUSTER_KEY=short"}, &out); code != 1 || out.Len() == 0 {
		t.Errorf("invalid config: exit %d, %q; want 1 and the config error", code, out.String())
	}
	out.Reset()
	if code := Healthcheck("gateway", nil, append(env, "PEERGATE_LISTEN_ADMIN="), &out); code != 1 || !strings.Contains(out.String(), "listen.admin is empty") {
		t.Errorf("admin disabled: exit %d, %q; want 1", code, out.String())
	}
}

func TestAdminAddrWildcardDialsLoopback(t *testing.T) {
	for in, want := range map[string]string{":9080": "127.0.0.1:9080", "0.0.0.0:9081": "127.0.0.1:9081", "[::]:9082": "[::1]:9082", "10.1.2.3:9080": "10.1.2.3:9080"} {
		got, err := adminAddr("gateway", "", []string{"PEERGATE_CLUSTER_KEY=healthcheck-test-cluster-key", "PEERGATE_LISTEN_ADMIN=" + in})
		if err != nil || got != want {
			t.Errorf("listen.admin %q: got %q, %v; want %q", in, got, err, want)
		}
	}
}
