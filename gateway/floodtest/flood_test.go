package floodtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/peergate/peergate/gateway/gwmetrics"
	"github.com/peergate/peergate/gateway/httpgw"
	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/gateway/rtspgw"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/config"
)

const (
	floodConns    = 11000       // idle connections the attacker holds to one listener
	attacker      = "127.0.0.2" // the attacker's address; the fresh client uses 127.0.0.1
	freshRequests = 200         // fresh-client sessions measured, with and without the flood
	redials       = 3000        // reconnections the attacker makes while the fresh client is measured
	answerBound   = 5 * time.Second
)

// TestIdleFlood: one host (127.0.0.2) opens 11,000 idle TCP connections to the gateway's RTSP
// listener, then to its HTTP listener, and keeps reconnecting while a fresh client from
// 127.0.0.1 opens 200 new connections, one session each (RTSP OPTIONS + DESCRIBE; HTTP GET).
// Every session must be answered correctly (200, then 302 to the registered origin) within
// 5 s, the listener must have refused the attacker's connections over the per-address cap
// (counted as refused_per_ip), and the refusals must be logged at most once a second. The
// listeners use the shipped defaults (config.DefaultGateway). The fresh client's latency, from
// dial to the last answer, is measured without the flood, with the idle connections held, and
// while the attacker also closes and redials them (4 goroutines, 3,000 redials), and logged
// (p50, p99, max): go test -v -run TestIdleFlood ./gateway/floodtest.
func TestIdleFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("holds 11,000 connections per listener")
	}
	raiseNoFile(t, floodConns+2000)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := config.DefaultGateway()
	tab := table()

	type result struct{ base, held, churn []time.Duration }
	results := map[string]result{}
	run := func(name string, start func(logger *slog.Logger, m *gwmetrics.Prom) (addr string, stop func()), session func(addr string) error) {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := gwmetrics.New(reg)
			if err != nil {
				t.Fatal(err)
			}
			logs := &countingHandler{}
			addr, stop := start(slog.New(logs), m)
			defer stop()

			base := measure(t, addr, session)
			a := &attack{addr: addr}
			defer a.close()
			floodStart := time.Now()
			a.open(t, floodConns)
			t.Logf("%s: %d idle connections from %s open after %v", name, floodConns, attacker, time.Since(floodStart).Round(time.Millisecond))
			// Every connection over the per-address cap is refused (and counted) at accept. The
			// first-request timeout frees the attacker's admitted slots every few seconds while
			// it dials, so a few more batches of perIP get in.
			perIP := map[string]int{"rtsp": cfg.RTSP.MaxConnsPerIP, "http": cfg.HTTP.MaxConnsPerIP}[name]
			first := map[string]time.Duration{"rtsp": cfg.RTSP.FirstRequestTimeout, "http": cfg.HTTP.ReadHeaderTimeout}[name]
			batches := 2 + int(time.Since(floodStart)/first)
			want := float64(floodConns - perIP*batches)
			waitFor(t, fmt.Sprintf("at least %v refusals over the per-address cap counted", want), 60*time.Second, func() bool {
				return counter(t, reg, name, gwmetrics.RefusedPerIP) >= want
			})
			held := measure(t, addr, session)
			stopChurn := a.churn(redials)
			churn := measure(t, addr, session)
			stopChurn()
			elapsed := time.Since(floodStart)
			refused := counter(t, reg, name, gwmetrics.RefusedPerIP)
			if over := counter(t, reg, name, gwmetrics.Refused); over != 0 {
				t.Errorf("%v connections refused over max_conns: the per-address cap should have kept the attacker far below it", over)
			}
			lines := logs.refusedLines.Load()
			if most := int64(elapsed/time.Second) + 2; lines > most || lines == 0 {
				t.Errorf("%d refusal WARN lines in %v for %v refusals, want 1 to %d (one a second)", lines, elapsed.Round(time.Millisecond), refused, most)
			}
			t.Logf("%s: %v connections refused over max_conns_per_ip=%d in %v, logged in %d WARN lines; %d attacker reconnections during the measurement",
				name, refused, perIP, elapsed.Round(time.Millisecond), lines, a.redialed.Load())
			results[name] = result{base, held, churn}
		})
	}

	run("rtsp", func(logger *slog.Logger, m *gwmetrics.Prom) (string, func()) {
		s := &rtspgw.Server{
			Address:             "127.0.0.1:0",
			Resolver:            tab,
			FirstRequestTimeout: cfg.RTSP.FirstRequestTimeout,
			ReadTimeout:         cfg.RTSP.ReadTimeout,
			WriteTimeout:        cfg.RTSP.WriteTimeout,
			DialTimeout:         cfg.RTSP.DialTimeout,
			MaxConns:            cfg.RTSP.MaxConns,
			MaxConnsPerIP:       cfg.RTSP.MaxConnsPerIP,
			RetryAfter:          cfg.HTTP.RetryAfter,
			Logger:              logger,
			Metrics:             m,
		}
		if err := s.Initialize(); err != nil {
			t.Fatal(err)
		}
		return s.Addr().String(), s.Close
	}, rtspSession)
	run("http", func(logger *slog.Logger, m *gwmetrics.Prom) (string, func()) {
		s := &httpgw.Server{
			Address:           "127.0.0.1:0",
			Resolver:          tab,
			ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
			MaxConns:          cfg.HTTP.MaxConns,
			MaxConnsPerIP:     cfg.HTTP.MaxConnsPerIP,
			RetryAfter:        cfg.HTTP.RetryAfter,
			Logger:            logger,
			Metrics:           m,
		}
		if err := s.Initialize(); err != nil {
			t.Fatal(err)
		}
		return s.Addr().String(), s.Close
	}, httpSession)

	for _, name := range []string{"rtsp", "http"} {
		r, ok := results[name]
		if !ok || len(r.base) == 0 || len(r.held) == 0 || len(r.churn) == 0 {
			continue
		}
		b, h, c := percentile(r.base, 0.99), percentile(r.held, 0.99), percentile(r.churn, 0.99)
		t.Logf("%s fresh-client p99: %v without the flood; %v with %d idle connections from %s (%.2fx); %v while it also reconnects (%.2fx)",
			name, b, h, floodConns, attacker, float64(h)/float64(b), c, float64(c)/float64(b))
		t.Logf("%s fresh-client p50: %v / %v / %v; max %v / %v / %v",
			name, percentile(r.base, 0.5), percentile(r.held, 0.5), percentile(r.churn, 0.5), slices.Max(r.base), slices.Max(r.held), slices.Max(r.churn))
	}
}

// rtspSession is a player's first exchange on a new connection: OPTIONS, then DESCRIBE,
// which must be redirected to the registered origin.
func rtspSession(addr string) error {
	c, err := net.DialTimeout("tcp", addr, answerBound)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(answerBound))
	br := bufio.NewReader(c)
	u := "rtsp://" + addr + "/live/cam1"
	if _, err := io.WriteString(c, "OPTIONS "+u+" RTSP/1.0\r\nCSeq: 1\r\n\r\n"); err != nil {
		return err
	}
	var res base.Response
	if err := res.Unmarshal(br); err != nil {
		return fmt.Errorf("OPTIONS: %w", err)
	}
	if res.StatusCode != base.StatusOK || !strings.Contains(strings.Join(res.Header["Public"], ","), "DESCRIBE") {
		return fmt.Errorf("OPTIONS answered %d %v", res.StatusCode, res.Header)
	}
	if _, err := io.WriteString(c, "DESCRIBE "+u+" RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n"); err != nil {
		return err
	}
	res = base.Response{}
	if err := res.Unmarshal(br); err != nil {
		return fmt.Errorf("DESCRIBE: %w", err)
	}
	if loc := strings.Join(res.Header["Location"], ","); res.StatusCode != base.StatusFound || loc != "rtsp://o1.test:8555/live/cam1" {
		return fmt.Errorf("DESCRIBE answered %d, Location %q", res.StatusCode, loc)
	}
	return nil
}

// httpSession is a player's first request on a new connection, which must be redirected.
func httpSession(addr string) error {
	c, err := net.DialTimeout("tcp", addr, answerBound)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(answerBound))
	if _, err := io.WriteString(c, "GET /live/cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	res.Body.Close()
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusFound || loc != "http://o1.test:8081/live/cam1/index.m3u8" {
		return fmt.Errorf("GET answered %d, Location %q", res.StatusCode, loc)
	}
	return nil
}

// measure runs freshRequests sessions one after the other from 127.0.0.1; each must succeed
// within answerBound.
func measure(t *testing.T, addr string, session func(string) error) []time.Duration {
	t.Helper()
	out := make([]time.Duration, 0, freshRequests)
	failed := 0
	for i := range freshRequests {
		start := time.Now()
		err := session(addr)
		d := time.Since(start)
		if err != nil || d > answerBound {
			failed++
			if failed <= 5 {
				t.Errorf("fresh client session %d: %v after %v", i, err, d)
			}
			continue
		}
		out = append(out, d)
	}
	if failed > 0 {
		t.Errorf("%d of %d fresh client sessions failed", failed, freshRequests)
	}
	return out
}

// attack holds idle connections from the attacker's address.
type attack struct {
	addr     string
	mu       sync.Mutex
	conns    []net.Conn
	wg       sync.WaitGroup
	redialed atomic.Int64
}

func (a *attack) dial() (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(attacker)}, Timeout: 10 * time.Second}
	return d.Dial("tcp", a.addr)
}

// open dials n connections, 32 at a time, and keeps them.
func (a *attack) open(t *testing.T, n int) {
	t.Helper()
	var next, failures atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				c, err := a.dial()
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					if failures.Add(1) > 100 {
						return
					}
					next.Add(-1) // try again
					continue
				}
				a.mu.Lock()
				a.conns = append(a.conns, c)
				a.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if a.count() < n {
		t.Fatalf("the attacker opened %d of %d connections (%d dial failures, first: %v)", a.count(), n, failures.Load(), firstErr.Load())
	}
}

func (a *attack) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.conns)
}

// churn starts 4 goroutines that close the oldest connection and dial a new one, up to max
// times in all, the way an attacker keeps its connections fresh; the returned func stops them.
func (a *attack) churn(max int64) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var budget atomic.Int64
	for range 4 {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for ctx.Err() == nil && budget.Add(1) <= max {
				a.mu.Lock()
				old := a.conns[0]
				a.conns = a.conns[1:]
				a.mu.Unlock()
				old.Close()
				c, err := a.dial()
				if err != nil {
					continue
				}
				a.redialed.Add(1)
				a.mu.Lock()
				a.conns = append(a.conns, c)
				a.mu.Unlock()
			}
		}()
	}
	return func() {
		cancel()
		a.wg.Wait()
	}
}

func (a *attack) close() {
	a.wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.conns {
		c.Close()
	}
	a.conns = nil
}

// table is a real resolver with one origin that runs live/cam1.
func table() *resolve.Table {
	t := resolve.New(resolve.Options{})
	t.PutOrigin(cluster.Origin{
		ID: "o1", State: cluster.StateUp, StartedAt: time.Now(), TTLMillis: 3000,
		Public: cluster.Public{"http": "http://o1.test:8081", "rtsp": "rtsp://o1.test:8555"},
	})
	t.PutStreams("o1", []cluster.Stream{{Name: "live/cam1", State: cluster.StreamRunning}})
	return t
}

// raiseNoFile lifts RLIMIT_NOFILE to at least need (the hard limit too, where allowed), and
// fails with what to do when the hard limit is lower.
func raiseNoFile(t *testing.T, need uint64) {
	t.Helper()
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	lim := orig
	if lim.Max < need {
		lim.Max = need // only a privileged process may raise the hard limit
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("this test holds about %d file descriptors in one process, but RLIMIT_NOFILE is %d (hard %d) and cannot be raised (%v): run it where `ulimit -Hn` is at least %d",
			need, orig.Cur, orig.Max, err, need)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
}

// counter reads peergate_gateway_redirects_total{proto, outcome}.
func counter(t *testing.T, reg *prometheus.Registry, proto, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "peergate_gateway_redirects_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["proto"] == proto && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func waitFor(t *testing.T, what string, bound time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countingHandler drops every record and counts the WARN lines about refused connections.
type countingHandler struct {
	refusedLines atomic.Int64
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && strings.HasSuffix(r.Message, "connections refused") {
		h.refusedLines.Add(1)
	}
	return nil
}

func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
