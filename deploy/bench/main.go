// Command bench (make bench-http) measures the gateway's HTTP and RTSP redirects at line rate
// against nginx `return 302` and a bare net/http 302 server on this machine.
//
// It starts a private redis-server and fills it with a registry of -streams streams over
// -origins origins the way origins do (shared/registry's Registrar, heartbeating throughout;
// with -large, a second redis-server holds the large registry),
// starts the gateway binary with logging on as `make demo` runs it (info, text, -log-prefix), nginx with deploy/bench/nginx.conf (1 worker), the bare net/http
// server (this binary with -serve-bare) and, when built, the bare fasthttp server; then drives
// each with wrk in interleaved rounds, keep-alive and one connection per request, and prints one
// table. Every load is on 127.0.0.1 and bounded in time.
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/registry"
)

const clusterKey = "peergate-bench-cluster-key-0123456789"

func main() {
	var (
		streams   = flag.Int("streams", 100000, "streams in the registry")
		origins   = flag.Int("origins", 10, "origins the streams are spread over")
		rounds    = flag.Int("rounds", 3, "interleaved rounds (the table shows medians)")
		dur       = flag.Duration("duration", 4*time.Second, "length of one wrk run")
		conns     = flag.Int("conns", 64, "wrk connections")
		gwBin     = flag.String("gateway", "bin/gateway", "gateway binary")
		fastBin   = flag.String("fasthttp", "", "bare fasthttp 302 binary (optional baseline)")
		nginxConf = flag.String("nginx-conf", "deploy/bench/nginx.conf", "nginx config template")
		logMode   = flag.String("log", "demo", "gateway logging: demo (info, -log-prefix, as make demo runs it, to a file), sedpipe (info through stdbuf -oL sed to a file), file (info to a file), off (level error)")
		proto     = flag.String("prototype", "", "optional experiment binary run as a target: BIN -addr ADDR -streams N -log FILE (its own in-memory table, no Redis)")
		compare   = flag.String("compare", "", "another gateway binary (e.g. a build of an older commit) run on the same registry with the same -log mode in the same rounds, shown as 'gateway compared'")
		alsoLog   = flag.String("also-log", "", "comma-separated extra gateways on the same registry with other -log modes (e.g. sedpipe,off), same rounds")
		large     = flag.Int("large", 0, "also run a second gateway on a registry of this many streams (e.g. 1000000), in its own redis-server, same rounds")
		largeOrig = flag.Int("large-origins", 100, "origins the -large streams are spread over")
		regTTL    = flag.Duration("registry-ttl", time.Minute, "TTL of the bench origins' records (they heartbeat every second; a long TTL keeps a CPU-starved bench process from expiring them mid-run)")
		coldOnly  = flag.Bool("cold-start", false, "only measure gateway cold start (time to first correct redirect, RSS)")
		serveBare = flag.String("serve-bare", "", "internal: serve the bare net/http 302 on this address")
		profile   = flag.String("profile", "", "only profile: run the gateway's HTTP listener in this process under wrk and write a CPU profile here")
		profTgt   = flag.String("profile-targets", "gateway", "with -profile: comma-separated in-process servers, each profiled to PATH.NAME: gateway, gateway+nolog (level error), bare (net/http 302), bare+timeouts (with the gateway's timeouts), bare+netcap (behind the gateway's connection caps)")
		profModes = flag.String("profile-modes", "keep-alive,close", "with -profile: comma-separated wrk modes")
	)
	flag.Parse()
	if *profile != "" {
		if err := profileGateway(*profile, strings.Split(*profTgt, ","), strings.Split(*profModes, ","), *streams, *origins, *conns, *dur); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *serveBare != "" {
		serveBareGo(*serveBare)
		return
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	b := &bench{streams: *streams, origins: *origins, largeOrigins: *largeOrig, ttl: *regTTL, dur: *dur, conns: *conns}
	defer b.cleanup()
	if err := b.run(*gwBin, *fastBin, *proto, *compare, *nginxConf, *logMode, *alsoLog, *rounds, *large, *coldOnly); err != nil {
		b.cleanup()
		fmt.Fprintln(os.Stderr, "bench:", err) // not log: slog.SetDefault routes it below Warn
		os.Exit(1)
	}
}

type bench struct {
	streams, origins int
	largeOrigins     int
	ttl              time.Duration
	dur              time.Duration
	conns            int
	tmp              string
	procs            []*exec.Cmd
	stopRegs         context.CancelFunc
	regWG            sync.WaitGroup
	once             sync.Once
}

func (b *bench) cleanup() {
	b.once.Do(func() {
		if b.stopRegs != nil {
			b.stopRegs()
			b.regWG.Wait()
		}
		for _, c := range slices.Backward(b.procs) {
			if c.Process != nil {
				_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM) // its process group: a pipeline's sed too
			}
		}
		for _, c := range b.procs {
			done := make(chan struct{})
			go func() { _ = c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			}
		}
		if b.tmp != "" {
			os.RemoveAll(b.tmp)
		}
	})
}

// start runs a command in its own process group (so cleanup stops pipelines whole).
// lastGroup is the process group of the command started last.
func (b *bench) lastGroup() int { return b.procs[len(b.procs)-1].Process.Pid }

func (b *bench) start(name string, args ...string) (*exec.Cmd, error) {
	c := exec.Command(name, args...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Stdout, c.Stderr = nil, nil
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b.procs = append(b.procs, c)
	return c, nil
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitFor(what string, d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if ok() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %s", what, d)
}

func streamName(i int) string { return "live/s" + strconv.Itoa(i) }

// noFollow sends one request on a new connection and returns the status and Location.
func get(url string) (int, string, error) {
	c := &http.Client{
		Timeout:       5 * time.Second,
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	res, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	res.Body.Close()
	return res.StatusCode, res.Header.Get("Location"), nil
}

func (b *bench) run(gwBin, fastBin, protoBin, compareBin, nginxConf, logMode, alsoLog string, rounds, large int, coldOnly bool) error {
	var err error
	if b.tmp, err = os.MkdirTemp("", "peergate-bench-"); err != nil {
		return err
	}
	redisAddr, err := b.startRedis()
	if err != nil {
		return err
	}
	gw, err := b.cluster(gwBin, redisAddr, clusterKey, b.streams, b.origins, logMode, "")
	if err != nil {
		return err
	}
	if coldOnly {
		return nil
	}
	script, err := b.script(b.streams)
	if err != nil {
		return err
	}
	var extra []*target
	if protoBin != "" {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort())
		if _, err := b.start(protoBin, "-addr", addr, "-streams", strconv.Itoa(b.streams), "-log", filepath.Join(b.tmp, "prototype.log")); err != nil {
			return err
		}
		group := b.lastGroup()
		if err := waitFor("prototype", time.Minute, func() bool {
			s, _, _ := get("http://" + addr + "/" + streamName(0) + "/index.m3u8")
			return s == 302
		}); err != nil {
			return err
		}
		extra = append(extra, &target{name: "prototype", addr: addr, script: script, group: group})
	}
	targets := []*target{{name: "gateway", addr: gw.http, script: script, group: gw.group, log: gw.log}}
	for i, mode := range strings.Split(alsoLog, ",") {
		if mode == "" {
			continue
		}
		g, err := b.startGateway(gwBin, redisAddr, clusterKey, b.streams, b.origins, mode, fmt.Sprintf("-%d", i))
		if err != nil {
			return err
		}
		targets = append(targets, &target{name: "gateway " + mode, addr: g.http, script: script, group: g.group, log: g.log})
	}
	if compareBin != "" {
		g, err := b.startGateway(compareBin, redisAddr, clusterKey, b.streams, b.origins, logMode, "-compared")
		if err != nil {
			return err
		}
		targets = append(targets, &target{name: "gateway compared", addr: g.http, script: script, group: g.group, log: g.log})
	}
	targets = append(targets, extra...)
	if large > 0 {
		// A second registry in its own redis-server and a second gateway reading it: sharing one
		// Redis, the big registry's reads and writes competed with the small one's heartbeats.
		bigRedis, err := b.startRedis()
		if err != nil {
			return err
		}
		big, err := b.cluster(gwBin, bigRedis, clusterKey+"-large", large, b.largeOrigins, logMode, "-large")
		if err != nil {
			return err
		}
		bigScript, err := b.script(large)
		if err != nil {
			return err
		}
		targets = append(targets, &target{name: fmt.Sprintf("gateway %dk", large/1000), addr: big.http, script: bigScript, group: big.group, log: big.log})
	}
	if bare, err := b.startBare(); err != nil {
		return err
	} else {
		targets = append(targets, &target{name: "net/http bare", addr: bare, script: script, group: b.lastGroup()})
	}
	if ng, err := b.startNginx(nginxConf); err != nil {
		return err
	} else {
		targets = append(targets, &target{name: "nginx", addr: ng, script: script, group: b.lastGroup()})
	}
	if fastBin != "" {
		port := freePort()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if _, err := b.start(fastBin, "-addr", addr); err != nil {
			return err
		}
		group := b.lastGroup()
		if err := waitFor("fasthttp", 10*time.Second, func() bool { s, _, _ := get("http://" + addr + "/x"); return s == 302 }); err != nil {
			return err
		}
		targets = append(targets, &target{name: "fasthttp bare", addr: addr, script: script, group: group})
	}
	modes := []string{"keep-alive", "close"}
	type key struct{ target, mode string }
	results := map[key][]wrkResult{}
	var rtsp, httpClose []float64
	for r := range rounds {
		fmt.Printf("round %d/%d\n", r+1, rounds)
		// Rotate the order each round so no target always runs first (or after the hottest).
		order := slices.Clone(targets)
		for range r {
			order = append(order[1:], order[0])
		}
		for _, t := range order {
			for _, m := range modes {
				cpu0 := groupCPU(t.group)
				res, err := wrk(t.addr, t.script, m == "close", b.conns, b.dur)
				if err != nil {
					return fmt.Errorf("%s %s: %w%s", t.name, m, err, logTail(t.log, 30))
				}
				if res.requests > 0 {
					res.cpuPerReq = (groupCPU(t.group) - cpu0) / time.Duration(res.requests)
				}
				results[key{t.name, m}] = append(results[key{t.name, m}], res)
				fmt.Printf("  %-16s %-10s %9.0f req/s  p50 %-9s p99 %-9s server CPU %s/req\n", t.name, m, res.rps, res.p50, res.p99, res.cpuPerReq)
			}
		}
		n, err := loadRTSP(gw.rtsp, b.streams, b.dur)
		if err != nil {
			return fmt.Errorf("rtsp: %w", err)
		}
		h, err := loadHTTPClose(gw.http, b.streams, b.dur)
		if err != nil {
			return fmt.Errorf("http close (Go client): %w", err)
		}
		rtsp, httpClose = append(rtsp, n), append(httpClose, h)
		fmt.Printf("  %-16s %-10s %9.0f redirects/s (OPTIONS+DESCRIBE, new connection each); HTTP same client %0.f req/s\n", "gateway", "rtsp", n, h)
	}

	med := func(k key) wrkResult {
		rs := slices.Clone(results[k])
		sort.Slice(rs, func(i, j int) bool { return rs[i].rps < rs[j].rps })
		return rs[len(rs)/2]
	}
	fmt.Printf("\nRedirect performance: %d streams over %d origins, wrk -t1 -c%d, %s x %d interleaved rounds (medians), gateway log: %s\n",
		b.streams, b.origins, b.conns, b.dur, rounds, logMode)
	fmt.Printf("%s, %d CPUs\n", cpuModel(), runtime.NumCPU())
	cpu := func(k key) time.Duration {
		var v []float64
		for _, r := range results[k] {
			v = append(v, float64(r.cpuPerReq))
		}
		return time.Duration(median(v))
	}
	fmt.Printf("%-16s %-10s %10s %9s %9s %9s %10s %10s %9s %10s\n", "server", "connection", "req/s", "p50", "p99", "x nginx", "x net/http",
		"CPU/req", "x nginx", "x net/http")
	for _, m := range modes {
		ng, floor := med(key{"nginx", m}), med(key{"net/http bare", m})
		ngCPU, floorCPU := cpu(key{"nginx", m}), cpu(key{"net/http bare", m})
		for _, t := range targets {
			r, c := med(key{t.name, m}), cpu(key{t.name, m})
			fmt.Printf("%-16s %-10s %10.0f %9s %9s %9.2f %10.2f %10s %9.2f %10.2f\n", t.name, m, r.rps, r.p50, r.p99, r.rps/ng.rps, r.rps/floor.rps,
				c.Round(10*time.Nanosecond), float64(ngCPU)/float64(c), float64(floorCPU)/float64(c))
		}
	}
	fmt.Println("(CPU/req: user+system time of the server's process group per answered request, from /proc; its x columns are")
	fmt.Println(" efficiency ratios, nginx's or the floor's CPU/req over this row's, so they hold while other load shares the cores)")
	rt, hc := median(rtsp), median(httpClose)
	fmt.Printf("%-16s %-10s %10.0f %9s %9s %9s %10s  (x HTTP close, same Go client: %.2f)\n", "gateway rtsp", "new conn", rt, "", "", "", "", rt/hc)
	if d, ok := gw.dropped(); ok {
		fmt.Printf("gateway log lines dropped (peergate_log_dropped_total): %s\n", d)
	}
	return nil
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

type target struct {
	name   string
	addr   string
	script string // wrk script choosing the request paths
	group  int    // process group whose CPU time is charged to the target
	log    string // the gateway's log file, shown when a run fails; "" for others
}

// logTail is the last n lines of a log file, for an error message; "" without one.
func logTail(path string, n int) string {
	if path == "" {
		return ""
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	return "\n--- last lines of " + filepath.Base(path) + ":\n" + strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// cluster fills a registry namespace with streams and starts a gateway reading it; it prints
// the gateway's cold start: time to the first correct redirect, to ready (the whole snapshot
// loaded), and its RSS then.
func (b *bench) cluster(gwBin, redisAddr, key string, streams, origins int, logMode, tag string) (*gateway, error) {
	t0 := time.Now()
	if err := b.fillRegistry(redisAddr, key, streams, origins); err != nil {
		return nil, err
	}
	fmt.Printf("registry: %d streams over %d origins written in %s\n", streams, origins, time.Since(t0).Round(time.Millisecond))
	gw, err := b.startGateway(gwBin, redisAddr, key, streams, origins, logMode, tag)
	if err != nil {
		return nil, err
	}
	fmt.Printf("gateway cold start with %d streams over %d origins: first correct redirect after %s, ready (whole snapshot) after %s, RSS %d MiB\n",
		streams, origins, gw.firstRedirect.Round(time.Millisecond), gw.ready.Round(time.Millisecond), rssKiB(gw.pid)/1024)
	if raw, err := os.ReadFile(gw.log); err == nil {
		for line := range strings.SplitSeq(string(raw), "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, "component=watcher") {
				fmt.Println("  " + line) // failed snapshot reads, sessions lost during the start
			}
		}
	}
	return gw, nil
}

func (b *bench) script(streams int) (string, error) {
	path := filepath.Join(b.tmp, fmt.Sprintf("paths-%d.lua", streams))
	return path, os.WriteFile(path, []byte(luaScript(streams)), 0o644)
}

// luaScript makes wrk ask for a random stream of the registry on every request.
func luaScript(streams int) string {
	return fmt.Sprintf(`math.randomseed(42)
request = function()
  return wrk.format(nil, "/live/s" .. math.random(0, %d) .. "/index.m3u8")
end
`, streams-1)
}

type wrkResult struct {
	rps       float64
	p50, p99  string
	requests  int64
	cpuPerReq time.Duration // the server's CPU time (user+system, its whole process group) per request
}

var (
	reRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reReq = regexp.MustCompile(`(\d+) requests in`)
	reP50 = regexp.MustCompile(`\n\s+50%\s+(\S+)`)
	reP99 = regexp.MustCompile(`\n\s+99%\s+(\S+)`)
	reNon = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reErr = regexp.MustCompile(`Socket errors: .*`)
)

func wrk(addr, script string, closeConn bool, conns int, d time.Duration) (wrkResult, error) {
	args := []string{"-t1", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(d.Seconds())) + "s", "--latency", "-s", script}
	if closeConn {
		args = append(args, "-H", "Connection: close")
	}
	args = append(args, "http://"+addr+"/")
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	s := string(out)
	m := reRPS.FindStringSubmatch(s)
	p50, p99 := reP50.FindStringSubmatch(s), reP99.FindStringSubmatch(s)
	if m == nil || p50 == nil || p99 == nil {
		return wrkResult{}, fmt.Errorf("wrk output not understood:\n%s", s)
	}
	if n := reNon.FindStringSubmatch(s); n != nil {
		return wrkResult{}, fmt.Errorf("%s answers other than 3xx:\n%s", n[1], s)
	}
	if e := reErr.FindString(s); e != "" && !closeConn {
		fmt.Printf("    (wrk: %s)\n", e)
	}
	rps, _ := strconv.ParseFloat(m[1], 64)
	var n int64
	if r := reReq.FindStringSubmatch(s); r != nil {
		n, _ = strconv.ParseInt(r[1], 10, 64)
	}
	return wrkResult{rps: rps, p50: p50[1], p99: p99[1], requests: n}, nil
}

func (b *bench) startRedis() (string, error) {
	port := freePort()
	if _, err := b.start("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "",
		"--appendonly", "no", "--dir", b.tmp); err != nil {
		return "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	return addr, waitFor("redis-server", 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = c.Write([]byte("PING\r\n"))
		buf := make([]byte, 7)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, _ := io.ReadFull(c, buf)
		return n == 7 && string(buf) == "+PONG\r\n"
	})
}

// fillRegistry registers the origins and their streams with shared/registry's Registrar and
// keeps them heartbeating until cleanup, as origins do.
func (b *bench) fillRegistry(redisAddr, key string, streams, origins int) error {
	client, err := registry.Dial("redis://" + redisAddr + "/0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	prev := b.stopRegs
	b.stopRegs = func() {
		cancel()
		client.Close()
		if prev != nil {
			prev()
		}
	}
	quiet := slog.New(slog.DiscardHandler)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, 4) // origins written at once
	for o := range origins {
		rec := cluster.Origin{
			ID: fmt.Sprintf("o%d", o),
			Public: cluster.Public{
				"http": fmt.Sprintf("http://127.0.0.1:%d", 18001+o),
				"rtsp": fmt.Sprintf("rtsp://127.0.0.1:%d", 19001+o),
			},
			Capacity: cluster.Capacity{},
		}
		reg, err := registry.NewRegistrar(client, key, rec, registry.RegistrarOptions{Logger: quiet, TTL: b.ttl})
		if err != nil {
			return err
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			list := make([]cluster.Stream, 0, streams/origins+1)
			for i := o; i < streams; i += origins {
				list = append(list, cluster.Stream{Name: streamName(i), State: cluster.StreamRunning})
			}
			reg.SetStreams(list)
			fctx, fcancel := context.WithTimeout(ctx, 5*time.Minute)
			err := reg.Flush(fctx)
			fcancel()
			if err != nil {
				mu.Lock()
				first = cmp.Or(first, fmt.Errorf("origin %s: %w", rec.ID, err))
				mu.Unlock()
				return
			}
			b.regWG.Go(func() { _ = reg.Run(ctx) })
		})
	}
	wg.Wait()
	return first
}

type gateway struct {
	http, rtsp, rtmp, admin string
	log                     string
	pid, group              int
	firstRedirect           time.Duration // to the first 302 to the right origin, for any of one stream per origin
	ready                   time.Duration // to /readyz 200: the first whole snapshot is in
}

func (g *gateway) dropped() (string, bool) {
	res, err := http.Get("http://" + g.admin + "/metrics")
	if err != nil {
		return "", false
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "peergate_log_dropped_total "); ok {
			return v, true
		}
	}
	return "", false
}

func (b *bench) startGateway(bin, redisAddr, key string, streams, origins int, logMode, tag string) (*gateway, error) {
	g := &gateway{
		http:  fmt.Sprintf("127.0.0.1:%d", freePort()),
		rtsp:  fmt.Sprintf("127.0.0.1:%d", freePort()),
		rtmp:  fmt.Sprintf("127.0.0.1:%d", freePort()), // every gateway its own: the default :1935 would clash
		admin: fmt.Sprintf("127.0.0.1:%d", freePort()),
	}
	level := "info"
	if logMode == "off" {
		level = "error"
	}
	conf := fmt.Sprintf(`cluster_key: %s
redis:
  url: redis://%s/0
log:
  level: %s
  format: text
listen:
  http: %s
  rtsp: %s
  rtmp: %s
  admin: %s
`, key, redisAddr, level, g.http, g.rtsp, g.rtmp, g.admin)
	confPath := filepath.Join(b.tmp, "gateway"+tag+".yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	logFile := filepath.Join(b.tmp, "gateway"+tag+".log")
	g.log = logFile
	var pipeline string
	switch logMode {
	case "demo": // as deploy/demo/run.sh runs it (there the terminal, here a file)
		pipeline = fmt.Sprintf(`exec %q -config %q -log-prefix '[gateway] ' > %q 2>&1`, abs, confPath, logFile)
	case "sedpipe": // as make demo ran it before: stderr through a line-prefixing sed
		pipeline = fmt.Sprintf(`%q -config %q 2>&1 | stdbuf -oL sed 's/^/[gateway] /' > %q`, abs, confPath, logFile)
	default:
		pipeline = fmt.Sprintf(`exec %q -config %q > %q 2>&1`, abs, confPath, logFile)
	}
	started := time.Now()
	cmd, err := b.start("bash", "-c", "set -o pipefail; "+pipeline)
	if err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _, _ = cmd.Process.Wait(); close(exited) }()
	g.group = b.lastGroup()
	// The first snapshot loads origin by origin and the gateway redirects to those loaded
	// meanwhile (503 for the rest): ask for one stream of every origin until one is redirected
	// to the right origin, then wait for /readyz and check the last stream.
	probe := &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer probe.CloseIdleConnections()
	correct := func(i int) bool {
		res, err := probe.Get("http://" + g.http + "/" + streamName(i) + "/index.m3u8")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		want := fmt.Sprintf("http://127.0.0.1:%d/", 18001+i%origins)
		loc := res.Header.Get("Location")
		if res.StatusCode == 302 && !strings.HasPrefix(loc, want) {
			fmt.Fprintf(os.Stderr, "WRONG redirect for %s: %s, want %s...\n", streamName(i), loc, want)
		}
		return res.StatusCode == 302 && strings.HasPrefix(loc, want)
	}
	fail := func(err error) (*gateway, error) {
		return nil, fmt.Errorf("%w%s", err, logTail(logFile, 30))
	}
	if err := waitFor("a first correct redirect", 5*time.Minute, func() bool {
		select {
		case <-exited:
			return true // reported below
		default:
		}
		for i := range min(origins, streams) {
			if correct(i) {
				return true
			}
		}
		return false
	}); err != nil {
		return fail(err)
	}
	select {
	case <-exited:
		return fail(errors.New("gateway exited"))
	default:
	}
	g.firstRedirect = time.Since(started)
	if err := waitFor("gateway /readyz", 5*time.Minute, func() bool {
		s, _, _ := get("http://" + g.admin + "/readyz")
		return s == 200
	}); err != nil {
		return fail(err)
	}
	g.ready = time.Since(started)
	if !correct(streams - 1) {
		return fail(fmt.Errorf("ready, but %s is not redirected to its origin", streamName(streams-1)))
	}
	g.pid = pidListening(g.http)
	return g, nil
}

// pidListening finds the process listening on addr through /proc (Linux).
func pidListening(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	raw, _ := os.ReadFile("/proc/net/tcp")
	inode := ""
	for _, line := range strings.Split(string(raw), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && strings.HasSuffix(f[1], fmt.Sprintf(":%04X", port)) && f[3] == "0A" {
			inode = f[9]
		}
	}
	if inode == "" {
		return 0
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, d := range dirs {
		if l, err := os.Readlink(d); err == nil && l == "socket:["+inode+"]" {
			pid, _ := strconv.Atoi(strings.Split(d, "/")[2])
			return pid
		}
	}
	return 0
}

func rssKiB(pid int) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}

func (b *bench) startBare() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	if _, err := b.start(self, "-serve-bare", addr); err != nil {
		return "", err
	}
	return addr, waitFor("bare net/http", 10*time.Second, func() bool { s, _, _ := get("http://" + addr + "/x"); return s == 302 })
}

// serveBareGo is the floor: net/http with a handler that writes the same kind of answer.
func serveBareGo(addr string) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr["Location"] = []string{"http://127.0.0.1:18001" + r.RequestURI}
		hdr["Cache-Control"] = []string{"no-store"}
		hdr["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusFound)
	})
	log.Fatal((&http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}).ListenAndServe())
}

func (b *bench) startNginx(tmpl string) (string, error) {
	if _, err := exec.LookPath("nginx"); err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			return "", errors.New("nginx not found: apt-get install -y nginx-light")
		}
	}
	raw, err := os.ReadFile(tmpl)
	if err != nil {
		return "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	conf := strings.NewReplacer("@LISTEN@", addr, "@PREFIX@", b.tmp).Replace(string(raw))
	path := filepath.Join(b.tmp, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return "", err
	}
	bin := "nginx"
	if _, err := exec.LookPath(bin); err != nil {
		bin = "/usr/sbin/nginx"
	}
	if _, err := b.start(bin, "-p", b.tmp, "-c", path); err != nil {
		return "", err
	}
	return addr, waitFor("nginx", 10*time.Second, func() bool { s, _, _ := get("http://" + addr + "/x"); return s == 302 })
}

func cpuModel() string {
	raw, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

const loadWorkers = 32

// loadRTSP counts RTSP redirects per second: each is a new TCP connection carrying OPTIONS
// then DESCRIBE, answered 200 then 302.
func loadRTSP(addr string, streams int, d time.Duration) (float64, error) {
	return loadConns(d, func(i int, buf []byte) error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		u := "rtsp://" + addr + "/" + streamName(i%streams)
		r := bufio.NewReaderSize(c, 1024)
		if _, err := io.WriteString(c, "OPTIONS "+u+" RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: bench\r\n\r\n"); err != nil {
			return err
		}
		if err := readStatus(r, "RTSP/1.0 200"); err != nil {
			return err
		}
		if _, err := io.WriteString(c, "DESCRIBE "+u+" RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\nUser-Agent: bench\r\n\r\n"); err != nil {
			return err
		}
		return readStatus(r, "RTSP/1.0 302")
	})
}

// loadHTTPClose is the same client shape for HTTP: one GET per new connection.
func loadHTTPClose(addr string, streams int, d time.Duration) (float64, error) {
	return loadConns(d, func(i int, buf []byte) error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReaderSize(c, 1024)
		if _, err := io.WriteString(c, "GET /"+streamName(i%streams)+"/index.m3u8 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"); err != nil {
			return err
		}
		return readStatus(r, "HTTP/1.1 302")
	})
}

// readStatus reads one header block (no body: the answers carry none we need) and checks its
// status line.
func readStatus(r *bufio.Reader, want string) error {
	status, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(status, want) {
		return fmt.Errorf("got %q, want %q", strings.TrimSpace(status), want)
	}
	length := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" {
			break
		}
		if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length:"); ok {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	_, err = r.Discard(length)
	return err
}

func loadConns(d time.Duration, one func(i int, buf []byte) error) (float64, error) {
	var (
		n     atomic.Int64
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	stop := time.Now().Add(d)
	start := time.Now()
	for w := range loadWorkers {
		wg.Go(func() {
			buf := make([]byte, 1024)
			for i := w; time.Now().Before(stop); i += loadWorkers {
				if err := one(i*7919, buf); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

// groupCPU is the user+system CPU time of every process in process group pgid (Linux /proc).
func groupCPU(pgid int) time.Duration {
	if pgid == 0 {
		return 0
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	for _, p := range stats {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(raw), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(raw[i+1:]))
		if len(f) < 13 {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g != pgid {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}
