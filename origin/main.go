// Command origin serves live streams and keeps its record and stream list in the peergate registry.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peergate/peergate/internal/cli"
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

// registryOpTimeout bounds one Drain, Flush or Deregister call.
const registryOpTimeout = 5 * time.Second

func main() { cli.Main("origin", run) }

// run wires everything from the config and serves until ctx is done.
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

	// The load meter starts with the table; the registrar samples it on every heartbeat.
	var loadMeter *media.LoadMeter
	load := func() cluster.Load {
		if loadMeter == nil {
			return cluster.Load{}
		}
		return loadMeter.Sample()
	}

	reg, err := registry.NewRegistrar(client, cfg.ClusterKey, cluster.Origin{
		ID:        cfg.ID,
		Private:   cfg.Private,
		Public:    cfg.PublicURLs(),
		State:     cluster.StateUp,
		Capacity:  cfg.ClusterCapacity(),
		StartedAt: time.Now().UTC(),
		Software:  "peergate-origin/" + version,
	}, registry.RegistrarOptions{
		Heartbeat: cfg.Heartbeat.Interval,
		TTL:       cfg.Heartbeat.TTL,
		Load:      load,
		Logger:    log,
	})
	if err != nil {
		return err
	}
	book := newStreamBook(reg, cfg.StaticStreams())
	// The initial list goes in before any media can start: SetStreams replaces the whole list,
	// so a file source's first "running" must come after it.
	initial := cfg.StaticStreams()
	for _, s := range cfg.SourceStreams(config.SourcePull) {
		initial = append(initial, cluster.Stream{Name: s.Name, State: cluster.StreamOnDemand})
	}
	reg.SetStreams(initial)

	// Media listeners first: an origin that cannot serve must never appear in the registry
	// (the registrar writes nothing before Run).
	// One NAME, one origin: publishers claim it cluster-wide unless publish.allow_duplicates.
	claim := reg.ClaimPublish
	if cfg.Publish.AllowDuplicates {
		claim = nil
	}
	ms, err := startMedia(cfg, mediaSide{book}, claim, log)
	if err != nil {
		return err
	}
	defer ms.close() // also after a failed start below; a no-op cost after the ordered shutdown
	loadMeter = ms.tbl.NewLoadMeter()
	viewers := ms.viewers

	var (
		wg       sync.WaitGroup
		flushed  atomic.Bool
		draining atomic.Bool
	)
	promReg := admin.NewRegistry("origin", version)
	promReg.MustRegister(
		cli.LogDroppedCounter(logOut),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "peergate_origin_draining", Help: "1 while the origin drains before exit.",
		}, func() float64 { return b2f(draining.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "peergate_origin_registered", Help: "1 once the record and stream list reached the registry.",
		}, func() float64 { return b2f(flushed.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "peergate_origin_registry_write_age_seconds",
			Help: "Seconds since the record last reached the registry (NaN before the first write); over one TTL the origin is not ready.",
		}, func() float64 { return writeAge(reg.LastWrite()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "peergate_origin_registry_index_write_age_seconds",
			Help: "Seconds since the shared origin index last took this origin (NaN before the first write).",
		}, func() float64 { return writeAge(reg.LastIndexWrite()) }),
		newTableCollector(ms.tbl),
	)
	streams := streamapi.New(apiSide{book}, cfg.StaticStreams(), log)
	streams.Token = cfg.Admin.Token
	if cfg.Admin.Token == "" {
		log.Warn("admin.token not set: the stream API's PUT and DELETE are disabled")
	}
	adm := &admin.Server{
		Address:  cfg.Listen.Admin,
		Gatherer: promReg,
		Logger:   log,
		// Operators (and tests) announce and withdraw streams at run time here.
		Handlers: map[string]http.Handler{streamapi.Prefix: streams, streamapi.Prefix + "/": streams},
		Ready: func() error {
			switch {
			case draining.Load():
				return errors.New("draining")
			case !flushed.Load():
				return errors.New("not registered yet")
			}
			// Not ready after one TTL without a successful registry write: gateways lose us then.
			return reg.CheckReady()
		},
	}
	if cfg.Listen.Admin != "" {
		if err := adm.Initialize(); err != nil {
			return fmt.Errorf("listen.admin: %w", err)
		}
		defer adm.Close()
		log.Info("listening", "listener", "admin", "addr", adm.Addr().String())
	}

	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	wg.Go(func() { _ = reg.Run(runCtx) })
	// Ready once the record and stream list are in Redis; Run keeps retrying meanwhile.
	wg.Go(func() {
		for runCtx.Err() == nil {
			fctx, cancel := context.WithTimeout(runCtx, registryOpTimeout)
			err := reg.Flush(fctx)
			cancel()
			if err == nil {
				flushed.Store(true)
				log.Info("registered", "origin", cfg.ID, "streams", len(cfg.Streams), "ondemand", len(ms.odm.Names()), "epoch", reg.Epoch())
				return
			}
			log.Warn("registration pending", "err", err)
			select {
			case <-runCtx.Done():
			case <-time.After(time.Second):
			}
		}
	})

	<-ctx.Done()
	log.Info("draining", "origin", cfg.ID, "drain_timeout", cfg.DrainTimeout.String())
	draining.Store(true)
	dctx, cancel := context.WithTimeout(context.Background(), registryOpTimeout)
	if err := reg.Drain(dctx); err != nil {
		log.Warn("drain not published", "err", err)
	}
	cancel()
	waitViewers(viewers, cfg.DrainTimeout, log)
	dctx, cancel = context.WithTimeout(context.Background(), registryOpTimeout)
	if err := reg.Deregister(dctx); err != nil {
		log.Warn("deregister failed; the record expires with its TTL", "err", err)
	}
	cancel()
	// After deregistering, so the streams ending here cause no registry churn.
	ms.close()
	cancelRun()
	wg.Wait()
	log.Info("stopped", "origin", cfg.ID)
	return nil
}

// waitViewers returns when nobody watches any more or after timeout.
func waitViewers(viewers func() int64, timeout time.Duration, log *slog.Logger) {
	deadline := time.Now().Add(timeout)
	for {
		n := viewers()
		if n <= 0 {
			return
		}
		if !time.Now().Before(deadline) {
			log.Warn("drain timeout; viewers cut off", "viewers", n)
			return
		}
		time.Sleep(min(250*time.Millisecond, time.Until(deadline)))
	}
}

// writeAge is the age of a registry write in seconds, NaN before the first.
func writeAge(t time.Time) float64 {
	if t.IsZero() {
		return math.NaN()
	}
	return time.Since(t).Seconds()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
