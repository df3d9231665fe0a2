package e2e

import (
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/testcert"
)

// TestRedisTLSAndACL: the README's Redis hardening works as written. redis-server listens
// on TLS only, the default user is off and peergate's user may touch only pg:* keys and
// channels, without the dangerous commands; an origin and a gateway given
// rediss://peergate:PASSWORD@127.0.0.1:PORT/0 (trusting the server's certificate through
// SSL_CERT_FILE) register and route a stream.
func TestRedisTLSAndACL(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	cert := testcert.New(t)
	certFile, keyFile := cert.WriteFiles(t)
	const pass = "acl-password-0123456789"
	addr := freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	dir := t.TempDir()
	cmd := exec.Command(bin,
		"--port", "0", "--tls-port", port, "--bind", "127.0.0.1",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--dir", dir, "--loglevel", "warning",
		"--user", "default", "off",
		"--user", "peergate", "on", ">"+pass, "~pg:*", "&pg:*", "+@all", "-@dangerous",
	)
	logf, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Logf("redis log:\n%s", b)
		}
	})
	rc := redis.NewClient(&redis.Options{Addr: addr, Username: "peergate", Password: pass,
		TLSConfig: &tls.Config{RootCAs: cert.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}})
	defer rc.Close()
	mediatest.EventuallyT(t, 10*time.Second, func() bool { return rc.Ping(context.Background()).Err() == nil },
		"redis-server with TLS did not answer on %s", addr)
	// The user is as restricted as the README says; the publish claims' EVAL is allowed.
	if err := rc.Set(context.Background(), "other:key", "x", 0).Err(); err == nil {
		t.Fatal("the ACL user wrote outside pg:*")
	}
	if err := rc.Eval(context.Background(), "return redis.call('GET', KEYS[1])", []string{"pg:x:claim:y"}).Err(); err != nil && err != redis.Nil {
		t.Fatalf("the ACL user may not run the claim script: %v", err)
	}
	if err := rc.FlushAll(context.Background()).Err(); err == nil {
		t.Fatal("the ACL user may FLUSHALL")
	}

	url := "rediss://peergate:" + pass + "@127.0.0.1:" + port + "/0"
	env := "SSL_CERT_FILE=" + certFile
	const name = "live/tls"
	o := start(t, "origin", "tls-origin", originConfig(t, "tls-origin", []string{name}), []string{
		"PEERGATE_CLUSTER_KEY=" + clusterKey,
		"PEERGATE_REDIS_URL=" + url,
		"PEERGATE_PUBLIC_HTTP=http://tls-origin.invalid:8081",
		"PEERGATE_LISTEN_HTTP=127.0.0.1:0",
		"PEERGATE_LISTEN_RTSP=",
		"PEERGATE_LISTEN_RTMP=",
		"PEERGATE_LISTEN_ADMIN=127.0.0.1:0",
		"PEERGATE_HEARTBEAT_INTERVAL=" + heartbeat.String(),
		"PEERGATE_HEARTBEAT_TTL=" + ttl.String(),
		env,
	}, "admin")
	gw := startGatewayOn(t, "gw-tls", url,
		"PEERGATE_LISTEN_RTSP=",
		"PEERGATE_LISTEN_RTMP=",
		env,
	)
	c := noRedirects()
	var code int
	var loc string
	if !mediatest.Eventually(30*time.Second, func() bool {
		code, loc, _ = probe(context.Background(), c, gw.addr("http"), "/"+name+"/index.m3u8")
		return code == 302 && strings.HasPrefix(loc, "http://tls-origin.invalid:8081/")
	}) {
		t.Fatalf("over rediss with an ACL user the gateway answers %d %q for %s", code, loc, name)
	}
	for _, p := range []*proc{o, gw} {
		lines, _ := p.logLines(0)
		for _, l := range lines {
			if strings.Contains(l, "NOPERM") || strings.Contains(l, "registry write failed") {
				t.Errorf("%s: %s", p.name, l)
			}
		}
	}
	t.Logf("gateway and origin work over %s", strings.Replace(url, pass, "PASSWORD", 1)+" (TLS, ACL user limited to pg:*)")
}
