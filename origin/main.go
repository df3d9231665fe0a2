// Command origin serves live streams and keeps its record and stream list in the peergate registry.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/peergate/peergate/internal/cli"
	"github.com/peergate/peergate/origin/announce"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/origin/streamapi"
	"github.com/peergate/peergate/shared/admin"
	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/config"
	"github.com/peergate/peergate/shared/pubauth"
	"github.com/peergate/peergate/shared/registry"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { cli.Main("origin", run) }

// run builds the origin's parts in order (media.go tells the media side's), serves until ctx
// is done, then drains.
func run(ctx context.Context, path string, env []string, logOut io.Writer) error {
	cfg, err := config.LoadOrigin(path, env)
	if err != nil {
		return err
	}
	log := config.NewLogger(logOut, cfg.Log)
	slog.SetDefault(log)
	registry.RouteLibraryLogs(log)
	if cfg.Auth.PublishSecret == "" && cfg.Auth.HTTPURL == "" {
		log.Warn(pubauth.OpenWarning)
	}
	client, err := registry.Dial(cfg.Redis.URL)
	if err != nil {
		return fmt.Errorf("redis.url: %w", err)
	}
	defer client.Close()
	// A missing clip stops the start here, with the key that names it.
	if err := cfg.CheckFiles(); err != nil {
		return err
	}

	// Cluster pull-through: a NAME running on another origin is relayed on demand.
	finder := registry.NewFinder(client, cfg.ClusterKey, registry.FinderOptions{MaxClockSkew: time.Second, Logger: log})
	ms, err := newMedia(cfg, finder, log)
	if err != nil {
		return err
	}
	defer ms.close() // also after a failed start below; a no-op after the ordered shutdown
	reg, err := registry.NewRegistrar(client, cfg.ClusterKey, cluster.Origin{
		ID: cfg.ID, Private: cfg.Private, Public: cfg.PublicURLs(), State: cluster.StateUp,
		Capacity: cfg.ClusterCapacity(), StartedAt: time.Now().UTC(), Software: "peergate-origin/" + version,
	}, registry.RegistrarOptions{
		Heartbeat: cfg.Heartbeat.Interval,
		TTL:       cfg.Heartbeat.TTL,
		Load:      ms.tbl.NewLoadMeter().Sample,
		Logger:    log,
	})
	if err != nil {
		return err
	}
	// The initial list goes in before any media can start: SetStreams replaces the whole list,
	// so a file source's first "running" must come after it.
	reg.SetStreams(append(cfg.StaticStreams(), ms.odm.Streams()...))
	book := announce.NewBook(reg, cfg.StaticStreams(), ms.odm)
	ms.tbl.Notify(book)
	// Media listeners before the registrar runs (it writes nothing before Run): an origin that
	// cannot serve must never appear in the registry.
	// One NAME, one origin: publishers claim it cluster-wide unless publish.allow_duplicates.
	claim := reg.ClaimPublish
	if cfg.Publish.AllowDuplicates {
		claim = nil
	}
	if err := ms.serve(cfg, claim, log); err != nil {
		return err
	}
	lc := &lifecycle{reg: reg, log: log}
	if ms.rtmp != nil {
		lc.rtmp = ms.rtmp
	}
	adm, err := startAdmin(cfg, lc, book, ms.tbl, logOut, log)
	defer adm.Close()
	if err != nil {
		return err
	}

	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	var wg sync.WaitGroup
	wg.Go(func() { _ = reg.Run(runCtx) })
	wg.Go(func() {
		lc.register(runCtx, "origin", cfg.ID, "streams", len(cfg.Streams), "ondemand", len(ms.odm.Names()))
	})

	<-ctx.Done()
	log.Info("draining", "origin", cfg.ID, "drain_timeout", cfg.DrainTimeout.String())
	lc.drain(func() int64 { return ms.tbl.Stats().Clients }, cfg.DrainTimeout)
	// After deregistering, so the streams ending here cause no registry churn.
	ms.close()
	cancelRun()
	wg.Wait()
	log.Info("stopped", "origin", cfg.ID)
	return nil
}

// startAdmin serves metrics, /readyz and the stream API (operators and tests announce and
// withdraw streams at run time) on listen.admin, unless it is "". The server is never nil.
func startAdmin(cfg *config.Origin, lc *lifecycle, book streamapi.Registry, tbl *media.Table, logOut io.Writer, log *slog.Logger) (*admin.Server, error) {
	promReg := admin.NewRegistry("origin", version)
	promReg.MustRegister(append(lc.collectors(), cli.LogDroppedCounter(logOut), media.NewCollector(tbl))...)
	streams := streamapi.New(book, cfg.StaticStreams(), log)
	streams.Token = cfg.Admin.Token
	if cfg.Admin.Token == "" {
		log.Warn("admin.token not set: the stream API's PUT and DELETE are disabled")
	}
	adm := &admin.Server{
		Address:  cfg.Listen.Admin,
		Gatherer: promReg,
		Logger:   log,
		Handlers: map[string]http.Handler{streamapi.Prefix: streams, streamapi.Prefix + "/": streams},
		Ready:    lc.ready,
	}
	if cfg.Listen.Admin == "" {
		return adm, nil
	}
	if err := adm.Initialize(); err != nil {
		return adm, fmt.Errorf("listen.admin: %w", err)
	}
	log.Info("listening", "listener", "admin", "addr", adm.Addr().String())
	return adm, nil
}
