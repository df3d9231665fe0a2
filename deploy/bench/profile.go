package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/peergate/peergate/gateway/gwmetrics"
	"github.com/peergate/peergate/gateway/httpgw"
	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/internal/cli"
	"github.com/peergate/peergate/internal/netcap"
	"github.com/peergate/peergate/shared/admin"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/config"
)

// profileGateway runs HTTP servers in this process under wrk, one after the other, each mode
// (keep-alive, close) in turn, with the CPU profile on; target NAME's profile goes to
// path.NAME (read it with go tool pprof -top). "gateway" is the gateway's HTTP listener with
// the same table, metrics and logger wiring as gateway/main.go (the log as make demo writes
// it: info, text, -log-prefix, to a file), "gateway+nolog" the same at level error; "bare", "bare+timeouts" and "bare+netcap" are the
// bare net/http 302 alone, with the gateway's timeouts, and behind the gateway's connection
// caps, to tell what each costs. It prints req/s and this process's CPU time per request
// (which holds while other load shares the cores).
func profileGateway(path string, targets, modes []string, streams, origins, conns int, d time.Duration) error {
	dir, err := os.MkdirTemp("", "peergate-profile-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "paths.lua")
	if err := os.WriteFile(script, []byte(luaScript(streams)), 0o644); err != nil {
		return err
	}
	for _, name := range targets {
		addr, stop, err := startProfiled(name, dir, streams, origins)
		if err != nil {
			return err
		}
		out := path + "." + name
		if len(targets) == 1 {
			out = path
		}
		err = profileOne(out, name, addr, script, modes, conns, d)
		stop()
		if err != nil {
			return err
		}
	}
	return nil
}

func profileOne(path, name, addr, script string, modes []string, conns int, d time.Duration) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	for _, m := range modes {
		cpu0 := selfCPU()
		r, err := wrk(addr, script, m == "close", conns, d)
		if err != nil {
			return err
		}
		per := time.Duration(0)
		if r.requests > 0 {
			per = (selfCPU() - cpu0) / time.Duration(r.requests)
		}
		fmt.Printf("in-process %-14s %-10s %8.0f req/s  p50 %-9s p99 %-9s CPU %s/req\n", name, m, r.rps, r.p50, r.p99, per)
	}
	fmt.Printf("  profile: %s\n", path)
	return nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startProfiled starts one named in-process server on a loopback port.
func startProfiled(name, dir string, streams, origins int) (string, func(), error) {
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr["Location"] = []string{"http://127.0.0.1:18001" + r.RequestURI}
		hdr["Cache-Control"] = []string{"no-store"}
		hdr["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusFound)
	})
	serve := func(ln net.Listener, srv *http.Server) (string, func(), error) {
		go func() { _ = srv.Serve(ln) }()
		return ln.Addr().String(), func() { _ = srv.Close() }, nil
	}
	switch name {
	case "gateway":
		return startProfiledGateway(dir, streams, origins, "info")
	case "gateway+nolog":
		return startProfiledGateway(dir, streams, origins, "error")
	case "bare", "bare+timeouts", "bare+netcap":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", nil, err
		}
		srv := &http.Server{Handler: bare, ReadHeaderTimeout: 5 * time.Second}
		switch name {
		case "bare+timeouts":
			srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout = httpgw.DefaultReadTimeout, httpgw.DefaultWriteTimeout, httpgw.DefaultIdleTimeout
			srv.MaxHeaderBytes = httpgw.DefaultMaxHeaderBytes
		case "bare+netcap":
			ln = &netcap.Listener{Listener: ln, Max: httpgw.DefaultMaxConns, MaxPerIP: httpgw.DefaultMaxConnsPerIP,
				EvictSilentAfter: netcap.DefaultEvictSilentAfter}
		}
		return serve(ln, srv)
	}
	return "", nil, fmt.Errorf("unknown profile target %q", name)
}

func startProfiledGateway(dir string, streams, origins int, level string) (string, func(), error) {
	table := resolve.New(resolve.Options{})
	for o := range origins {
		id := fmt.Sprintf("o%d", o)
		table.PutOrigin(cluster.Origin{
			ID: id, State: cluster.StateUp, StartedAt: time.Now(), TTLMillis: 3_600_000,
			Public: cluster.Public{"http": fmt.Sprintf("http://127.0.0.1:%d", 18001+o)},
		})
		list := make([]cluster.Stream, 0, streams/origins+1)
		for i := o; i < streams; i += origins {
			list = append(list, cluster.Stream{Name: streamName(i), State: cluster.StreamRunning})
		}
		table.PutStreams(id, list)
	}
	logFile, err := os.Create(filepath.Join(dir, "gateway.log"))
	if err != nil {
		return "", nil, err
	}
	sink := cli.NewAsyncWriter(logFile, cli.DefaultLogBuffer, "[gateway] ")
	log := config.NewLogger(sink, config.Log{Level: level, Format: "text"})
	metrics, err := gwmetrics.New(admin.NewRegistry("gateway", "bench"))
	if err != nil {
		return "", nil, err
	}
	srv := &httpgw.Server{Address: "127.0.0.1:0", Resolver: table, Logger: log.With("listener", "http"), Metrics: metrics}
	if err := srv.Initialize(); err != nil {
		return "", nil, err
	}
	return srv.Addr().String(), func() {
		srv.Close()
		sink.Close(time.Second)
		logFile.Close()
		if n := sink.Dropped(); n > 0 {
			slog.Warn("profile: log lines dropped", "n", n)
		}
	}, nil
}
