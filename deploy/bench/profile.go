package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/peergate/peergate/gateway/gwmetrics"
	"github.com/peergate/peergate/gateway/httpgw"
	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/internal/cli"
	"github.com/peergate/peergate/shared/admin"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/config"
)

// profileGateway runs the gateway's HTTP listener in this process (the same table, metrics
// and logger wiring as gateway/main.go) under wrk,
// keep-alive then one connection per request, with the CPU profile on; it writes the profile
// to path (read it with go tool pprof -top). The log goes as make demo writes it (info, text,
// -log-prefix), to a file.
func profileGateway(path string, streams, origins, conns int, d time.Duration) error {
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
	logFile, err := os.CreateTemp("", "peergate-profile-*.log")
	if err != nil {
		return err
	}
	defer os.Remove(logFile.Name())
	defer logFile.Close()
	sink := cli.NewAsyncWriter(logFile, cli.DefaultLogBuffer, "[gateway] ")
	defer sink.Close(time.Second)
	log := config.NewLogger(sink, config.Log{Level: "info", Format: "text"})
	metrics, err := gwmetrics.New(admin.NewRegistry("gateway", "bench"))
	if err != nil {
		return err
	}
	srv := &httpgw.Server{Address: "127.0.0.1:0", Resolver: table, Logger: log.With("listener", "http"), Metrics: metrics}
	if err := srv.Initialize(); err != nil {
		return err
	}
	defer srv.Close()

	dir, err := os.MkdirTemp("", "peergate-profile-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "paths.lua")
	if err := os.WriteFile(script, []byte(luaScript(streams)), 0o644); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	for _, closeConn := range []bool{false, true} {
		r, err := wrk(srv.Addr().String(), script, closeConn, conns, d)
		if err != nil {
			pprof.StopCPUProfile()
			return err
		}
		fmt.Printf("in-process gateway, close=%v: %.0f req/s p50 %s p99 %s\n", closeConn, r.rps, r.p50, r.p99)
	}
	pprof.StopCPUProfile()
	fmt.Printf("log lines dropped: %d\nprofile written to %s (go tool pprof -top %s)\n", sink.Dropped(), path, path)
	return nil
}
