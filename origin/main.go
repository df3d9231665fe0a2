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

// registryOpTimeout bounds one Drain, Flush or Deregister call.
const registryOpTimeout = 5 * time.Second

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
	if cfg.Auth.PublishSecret == "" {
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

	ms, err := newMedia(cfg, log)
	if err != nil {
		return err
	}
	defer ms.close() // also after a failed start below; a no-op after the ordered shutdown
	reg, err := registry.NewRegistrar(client, cfg.ClusterKey, record(cfg), registry.RegistrarOptions{
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
	// Media listeners first: an origin that cannot serve must never appear in the registry
	// (the registrar writes nothing before Run).
	if err := ms.serve(cfg, log); err != nil {
		return err
	}
	lc := &lifecycle{reg: reg, log: log}
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
	lc.drain(ms.viewers, cfg.DrainTimeout)
	// After deregistering, so the streams ending here cause no registry churn.
	ms.close()
	cancelRun()
	wg.Wait()
	log.Info("stopped", "origin", cfg.ID)
	return nil
}

// record is the origin's registry record at start.
func record(cfg *config.Origin) cluster.Origin {
	return cluster.Origin{
		ID:        cfg.ID,
		Private:   cfg.Private,
		Public:    cfg.PublicURLs(),
		State:     cluster.StateUp,
		Capacity:  cfg.ClusterCapacity(),
		StartedAt: time.Now().UTC(),
		Software:  "peergate-origin/" + version,
	}
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

// lifecycle is the origin's standing in the registry: registered, draining.
type lifecycle struct {
	reg      *registry.Registrar
	log      *slog.Logger
	flushed  atomic.Bool // the record and stream list reached the registry
	draining atomic.Bool
}

// ready is /readyz: registered, not draining, and a registry write within one TTL (without
// one, gateways lose us).
func (lc *lifecycle) ready() error {
	switch {
	case lc.draining.Load():
		return errors.New("draining")
	case !lc.flushed.Load():
		return errors.New("not registered yet")
	}
	return lc.reg.CheckReady()
}

// register returns once the record and stream list are in Redis (logging "registered" with
// attrs) or ctx ends; Run keeps retrying meanwhile.
func (lc *lifecycle) register(ctx context.Context, attrs ...any) {
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, registryOpTimeout)
		err := lc.reg.Flush(fctx)
		cancel()
		if err == nil {
			lc.flushed.Store(true)
			lc.log.Info("registered", append(attrs, "epoch", lc.reg.Epoch())...)
			return
		}
		lc.log.Warn("registration pending", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// drain publishes the draining state, waits for the viewers to leave (up to timeout) and
// deregisters.
func (lc *lifecycle) drain(viewers func() int64, timeout time.Duration) {
	lc.draining.Store(true)
	dctx, cancel := context.WithTimeout(context.Background(), registryOpTimeout)
	if err := lc.reg.Drain(dctx); err != nil {
		lc.log.Warn("drain not published", "err", err)
	}
	cancel()
	waitViewers(viewers, timeout, lc.log)
	dctx, cancel = context.WithTimeout(context.Background(), registryOpTimeout)
	if err := lc.reg.Deregister(dctx); err != nil {
		lc.log.Warn("deregister failed; the record expires with its TTL", "err", err)
	}
	cancel()
}

// collectors are the lifecycle's gauges.
func (lc *lifecycle) collectors() []prometheus.Collector {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	return []prometheus.Collector{
		gauge("peergate_origin_draining", "1 while the origin drains before exit.",
			func() float64 { return b2f(lc.draining.Load()) }),
		gauge("peergate_origin_registered", "1 once the record and stream list reached the registry.",
			func() float64 { return b2f(lc.flushed.Load()) }),
		gauge("peergate_origin_registry_write_age_seconds",
			"Seconds since the record last reached the registry (NaN before the first write); over one TTL the origin is not ready.",
			func() float64 { return writeAge(lc.reg.LastWrite()) }),
		gauge("peergate_origin_registry_index_write_age_seconds",
			"Seconds since the shared origin index last took this origin (NaN before the first write).",
			func() float64 { return writeAge(lc.reg.LastIndexWrite()) }),
	}
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
