// Package redistest starts real redis-server, Redis Cluster and Sentinel processes for tests.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const installHint = "apt-get install redis-server redis-sentinel redis-tools"

// startTimeout bounds how long one process may take to answer PING.
const startTimeout = 10 * time.Second

// Server is one redis-server (or redis-sentinel) process on 127.0.0.1.
type Server struct {
	t    testing.TB
	bin  string
	args func(dir string, port int) []string
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
}

func lookBin(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("redistest: %s not found in PATH: %s", name, installHint)
	}
	return p
}

// freePort returns a port that was free a moment ago; with bus, port+10000 was free too.
func freePort(bus bool) (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !bus {
			return port, nil
		}
		if port+10000 > 65535 {
			continue
		}
		lb, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		_ = lb.Close()
		return port, nil
	}
	return 0, errors.New("no free port pair found")
}

// startServer picks a free port and starts the process, retrying when the port was taken meanwhile.
func startServer(t testing.TB, bin string, bus bool, args func(dir string, port int) []string) *Server {
	t.Helper()
	s := &Server{t: t, bin: bin, args: args, dir: t.TempDir()}
	var lastErr error
	for range 5 {
		port, err := freePort(bus)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.port = port
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(func() {
				if t.Failed() {
					s.logTail()
				}
				s.Kill()
			})
			return s
		}
	}
	s.logTail()
	t.Fatalf("redistest: %s did not start: %v", filepath.Base(bin), lastErr)
	return nil
}

func (s *Server) logPath() string { return filepath.Join(s.dir, "server.log") }

func (s *Server) start() error {
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, s.args(s.dir, s.port)...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // no strays if the test binary dies
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("exited during start on port %d (see %s)", s.port, s.logPath())
		case <-time.After(20 * time.Millisecond):
		}
		if r, err := Do(s.Addr(), "PING"); err == nil && r == "PONG" {
			return nil
		}
	}
	s.Kill()
	return fmt.Errorf("no PONG on port %d within %s", s.port, startTimeout)
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port is the TCP port, stable across Restart.
func (s *Server) Port() int { return s.port }

// URL is redis://127.0.0.1:port.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Dir is the server's working directory.
func (s *Server) Dir() string { return s.dir }

// Kill sends SIGKILL and waits for the process to exit; it is safe to call twice.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart kills the process if it runs and starts it again on the same port. Nothing is
// persisted, so a data node comes back empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	for range 20 { // the port can stay busy for a moment after a kill
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.logTail()
	s.t.Fatalf("redistest: restart on port %d: %v", s.port, err)
}

func (s *Server) logTail() {
	f, err := os.Open(s.logPath())
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 30 {
			lines = lines[1:]
		}
	}
	s.t.Logf("redistest: last lines of %s:\n%s", s.logPath(), strings.Join(lines, "\n"))
}

func dataArgs(dir string, port int, extra ...string) []string {
	return append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning",
	}, extra...)
}

// Standalone starts one redis-server without persistence.
func Standalone(t testing.TB) *Server {
	t.Helper()
	bin := lookBin(t, "redis-server")
	return startServer(t, bin, false, func(dir string, port int) []string { return dataArgs(dir, port) })
}

// Cluster is a Redis Cluster (by default three masters without replicas).
type Cluster struct {
	Nodes []*Server
}

// URL is redis+cluster://h1:p1,h2:p2,h3:p3.
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// NewCluster starts three cluster-enabled redis-server processes, joins them with
// redis-cli --cluster create and waits for cluster_state:ok on every node.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	return NewClusterWith(t, ClusterConfig{})
}

// ClusterConfig shapes a Redis Cluster.
type ClusterConfig struct {
	Masters     int           // 0 means 3
	Replicas    int           // replicas per master; 0 means none
	NodeTimeout time.Duration // cluster-node-timeout; 0 means 2s
	// Partial sets cluster-require-full-coverage no: the masters still up keep serving their
	// slots while one fails over (with the default, every node refuses commands until then).
	Partial bool
}

// NewClusterWith starts Masters*(1+Replicas) cluster-enabled nodes, joins them with
// redis-cli --cluster create --cluster-replicas and waits until every node reports
// cluster_state:ok and every master has its replicas attached.
func NewClusterWith(t testing.TB, cfg ClusterConfig) *Cluster {
	t.Helper()
	if cfg.Masters == 0 {
		cfg.Masters = 3
	}
	if cfg.NodeTimeout == 0 {
		cfg.NodeTimeout = 2 * time.Second
	}
	bin := lookBin(t, "redis-server")
	cli := lookBin(t, "redis-cli")
	c := &Cluster{}
	for range cfg.Masters * (1 + cfg.Replicas) {
		s := startServer(t, bin, true, func(dir string, port int) []string {
			coverage := "yes"
			if cfg.Partial {
				coverage = "no"
			}
			return dataArgs(dir, port,
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
				"--cluster-node-timeout", strconv.FormatInt(cfg.NodeTimeout.Milliseconds(), 10),
				"--cluster-require-full-coverage", coverage)
		})
		c.Nodes = append(c.Nodes, s)
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(cfg.Replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.waitOK(t, 30*time.Second)
	if cfg.Replicas > 0 {
		deadline := time.Now().Add(30 * time.Second)
		for {
			masters := 0
			for _, n := range c.Nodes {
				if info, err := Do(n.Addr(), "INFO", "replication"); err == nil &&
					strings.Contains(info, "role:master") &&
					strings.Contains(info, "connected_slaves:"+strconv.Itoa(cfg.Replicas)) &&
					!strings.Contains(info, "state=wait_bgsave") {
					masters++
				}
			}
			if masters == cfg.Masters {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: replicas did not attach to every master (%d of %d ready)", masters, cfg.Masters)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// waitOK waits until every running node reports cluster_state:ok.
func (c *Cluster) waitOK(t testing.TB, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		for {
			info, err := Do(n.Addr(), "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: node %s never reached cluster_state:ok (err %v):\n%s", n.Addr(), err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// MasterFor returns the running node that serves key as master, by asking each node's ROLE
// and CLUSTER KEYSLOT / CLUSTER SHARDS-free slot lookup (CLUSTER NODES).
func (c *Cluster) MasterFor(key string) (*Server, error) {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		slot, err := Do(n.Addr(), "CLUSTER", "KEYSLOT", key)
		if err != nil {
			continue
		}
		nodes, err := Do(n.Addr(), "CLUSTER", "NODES")
		if err != nil {
			continue
		}
		want, _ := strconv.Atoi(slot)
		for line := range strings.SplitSeq(nodes, "\n") {
			f := strings.Fields(line)
			if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			for _, r := range f[8:] {
				lo, hi, _ := strings.Cut(r, "-")
				if hi == "" {
					hi = lo
				}
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if err1 == nil && err2 == nil && a <= want && want <= b {
					addr, _, _ := strings.Cut(f[1], "@")
					for _, m := range c.Nodes {
						if m.Addr() == addr {
							return m, nil
						}
					}
				}
			}
		}
		return nil, fmt.Errorf("no master for slot %d in CLUSTER NODES of %s", want, n.Addr())
	}
	return nil, errors.New("no running node answers")
}

// Role is the first line of ROLE on s ("master" or "slave"), or "" when it does not answer.
func (s *Server) Role() string {
	r, err := Do(s.Addr(), "ROLE")
	if err != nil {
		return ""
	}
	role, _, _ := strings.Cut(r, "\n")
	return role
}

// Running reports whether the process was started and not killed.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// SentinelConfig shapes a Sentinel deployment.
type SentinelConfig struct {
	Sentinels int  // 1 or 3; 0 means 1
	Replica   bool // also start one replica of the master
}

// Sentinel is a monitored master, an optional replica and its sentinels.
type Sentinel struct {
	MasterName string
	Master     *Server
	Replica    *Server // nil unless asked for
	Sentinels  []*Server
}

// URL is redis+sentinel://s1,s2,.../mymaster.
func (s *Sentinel) URL() string {
	addrs := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		addrs[i] = n.Addr()
	}
	return "redis+sentinel://" + strings.Join(addrs, ",") + "/" + s.MasterName
}

// NewSentinel starts one master and one redis-sentinel monitoring it as "mymaster".
func NewSentinel(t testing.TB) *Sentinel {
	t.Helper()
	return NewSentinelWith(t, SentinelConfig{})
}

// NewSentinelWith starts a master, an optional replica and 1 or 3 sentinels (quorum 1 or 2),
// and waits until every sentinel reports the master.
func NewSentinelWith(t testing.TB, cfg SentinelConfig) *Sentinel {
	t.Helper()
	n := cfg.Sentinels
	if n == 0 {
		n = 1
	}
	if n != 1 && n != 3 {
		t.Fatalf("redistest: Sentinels must be 1 or 3, got %d", n)
	}
	sbin := lookBin(t, "redis-sentinel")
	sn := &Sentinel{MasterName: "mymaster", Master: Standalone(t)}
	if cfg.Replica {
		bin := lookBin(t, "redis-server")
		sn.Replica = startServer(t, bin, false, func(dir string, port int) []string {
			return dataArgs(dir, port, "--replicaof", "127.0.0.1", strconv.Itoa(sn.Master.Port()))
		})
	}
	quorum := n/2 + 1
	for range n {
		s := startServer(t, sbin, false, func(dir string, port int) []string {
			conf := filepath.Join(dir, "sentinel.conf")
			// Sentinel rewrites its config file, so it is written fresh on every start.
			body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nprotected-mode no\n"+
				"sentinel monitor %s 127.0.0.1 %d %d\n"+
				"sentinel down-after-milliseconds %s 1000\n"+
				"sentinel failover-timeout %s 5000\n",
				port, dir, sn.MasterName, sn.Master.Port(), quorum, sn.MasterName, sn.MasterName)
			if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
				t.Errorf("redistest: %v", err)
			}
			return []string{conf}
		})
		sn.Sentinels = append(sn.Sentinels, s)
	}
	want := "127.0.0.1\n" + strconv.Itoa(sn.Master.Port())
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range sn.Sentinels {
		for {
			got, err := Do(s.Addr(), "SENTINEL", "get-master-addr-by-name", sn.MasterName)
			if err == nil && got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: sentinel %s does not report %s (got %q, err %v)", s.Addr(), sn.MasterName, got, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return sn
}

// Kill SIGKILLs every node of the cluster.
func (c *Cluster) Kill() {
	for _, n := range c.Nodes {
		n.Kill()
	}
}

// Restart brings every node back on its port with its nodes.conf (slots kept, data gone)
// and waits for cluster_state:ok again.
func (c *Cluster) Restart() {
	for _, n := range c.Nodes {
		n.Restart()
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.Nodes {
		for {
			info, err := Do(n.Addr(), "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				n.t.Fatalf("redistest: node %s did not return to cluster_state:ok (err %v)", n.Addr(), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Kill SIGKILLs the master (the sentinels keep running).
func (s *Sentinel) Kill() { s.Master.Kill() }

// Restart brings the master back, empty, on its port.
func (s *Sentinel) Restart() { s.Master.Restart() }
