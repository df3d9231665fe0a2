// Package e2e runs the real gateway and origin binaries against real Redis topologies.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "peergate-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	// The binaries are built without -race to keep the load realistic; the packages they
	// wire are race-tested on their own.
	cmd := exec.Command("go", "build", "-o", dir, "../gateway", "../origin")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building binaries:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one running binary whose listeners were bound to :0 and read back from its JSON log.
type proc struct {
	t     testing.TB
	name  string
	cmd   *exec.Cmd
	mu    sync.Mutex
	addrs map[string]string
	lines []string // the JSON log lines so far (the first maxKeptLines), for tests that read outcomes
	ready chan struct{}
	done  chan struct{}
	log   *os.File
}

// start runs binary with the config file and environment, and waits until every listener in want has logged its address.
func start(t testing.TB, binary, name, configFile string, env []string, want ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{}
	if configFile != "" {
		args = append(args, "-config", configFile)
	}
	cmd := exec.Command(filepath.Join(binDir, binary), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "PEERGATE_LOG_FORMAT=json", "PEERGATE_LOG_LEVEL=info"}, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, cmd: cmd, addrs: map[string]string{}, ready: make(chan struct{}), done: make(chan struct{}), log: lf}
	go p.readLog(stderr, want)
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.done
		lf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("%s log tail:\n%s", name, b)
		}
	})
	select {
	case <-p.ready:
	case <-p.done:
		b, _ := os.ReadFile(logPath)
		t.Fatalf("%s exited before it was ready:\n%s", name, b)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not log its listeners %v in 30s", name, want)
	}
	return p
}

func (p *proc) readLog(r io.Reader, want []string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	left := map[string]bool{}
	for _, w := range want {
		left[w] = true
	}
	closed := false
	if len(left) == 0 {
		close(p.ready)
		closed = true
	}
	for sc.Scan() {
		line := sc.Bytes()
		p.log.Write(append(line, '\n'))
		p.mu.Lock()
		if len(p.lines) < maxKeptLines {
			p.lines = append(p.lines, string(line))
		}
		p.mu.Unlock()
		var rec struct {
			Msg      string `json:"msg"`
			Listener string `json:"listener"`
			Addr     string `json:"addr"`
		}
		if json.Unmarshal(line, &rec) != nil || rec.Msg != "listening" {
			continue
		}
		p.mu.Lock()
		p.addrs[rec.Listener] = rec.Addr
		p.mu.Unlock()
		delete(left, rec.Listener)
		if len(left) == 0 && !closed {
			close(p.ready)
			closed = true
		}
	}
	io.Copy(io.Discard, r)
}

// maxKeptLines bounds the log lines a proc keeps in memory.
const maxKeptLines = 100000

// logCount is how many log lines the proc has kept so far.
func (p *proc) logCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// logLines returns the log lines from index from on, and the index after the last one.
func (p *proc) logLines(from int) ([]string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if from > len(p.lines) {
		from = len(p.lines)
	}
	return append([]string(nil), p.lines[from:]...), len(p.lines)
}

func (p *proc) addr(listener string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.addrs[listener]
	if !ok {
		p.t.Fatalf("%s has no %s listener", p.name, listener)
	}
	return a
}

func (p *proc) signal(s os.Signal) {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(s)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(d time.Duration) (int, bool) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return -1, false
	}
}

// noRedirects is an HTTP client that reports redirects instead of following them.
func noRedirects() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// probe asks a gateway for path and returns the status and Location.
func probe(ctx context.Context, c *http.Client, gw, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, "http://"+gw+path, nil)
	if err != nil {
		return 0, "", err
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, res.Header.Get("Location"), nil
}

func writeFile(t testing.TB, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// originConfig writes an origin config whose static stream list holds names.
func originConfig(t *testing.T, id string, names []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "id: %s\nstreams:\n", id)
	for _, n := range names {
		fmt.Fprintf(&b, "  - name: %s\n", n)
	}
	return writeFile(t, id+".yaml", b.String())
}

// startGatewayOn runs a gateway of the cluster on redisURL with every listener on 127.0.0.1:0
// and RTMP in relay mode, then env (later entries win: "PEERGATE_LISTEN_RTSP=" turns a
// listener off), and waits until it is ready.
func startGatewayOn(t testing.TB, name, redisURL string, env ...string) *proc {
	t.Helper()
	full := append([]string{
		"PEERGATE_CLUSTER_KEY=" + clusterKey,
		"PEERGATE_REDIS_URL=" + redisURL,
		"PEERGATE_LISTEN_HTTP=127.0.0.1:0",
		"PEERGATE_LISTEN_RTSP=127.0.0.1:0",
		"PEERGATE_LISTEN_RTMP=127.0.0.1:0",
		"PEERGATE_LISTEN_ADMIN=127.0.0.1:0",
		"PEERGATE_RTMP_MODE=relay",
	}, env...)
	listen := map[string]bool{}
	for _, e := range full {
		if k, v, ok := strings.Cut(e, "="); ok && strings.HasPrefix(k, "PEERGATE_LISTEN_") {
			listen[strings.ToLower(strings.TrimPrefix(k, "PEERGATE_LISTEN_"))] = v != ""
		}
	}
	var want []string
	for _, l := range []string{"http", "rtsp", "rtmp", "admin"} {
		if listen[l] {
			want = append(want, l)
		}
	}
	gw := start(t, "gateway", name, "", full, want...)
	waitReady(t, gw)
	return gw
}
