// Command gateway answers players with protocol-native redirects to the origin that carries their stream.
package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/peergate/peergate/gateway/adminapi"
	"github.com/peergate/peergate/gateway/gwmetrics"
	"github.com/peergate/peergate/gateway/httpgw"
	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/gateway/rtmpgw"
	"github.com/peergate/peergate/gateway/rtspgw"
	"github.com/peergate/peergate/internal/cli"
	"github.com/peergate/peergate/shared/admin"
	"github.com/peergate/peergate/shared/config"
	"github.com/peergate/peergate/shared/pubauth"
	"github.com/peergate/peergate/shared/registry"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// "gateway publish-key -name NAME [-exp 24h]" prints a publish key (see shared/pubauth).
	if len(os.Args) > 1 && os.Args[1] == "publish-key" {
		if err := pubauth.KeyCommand(os.Args[2:], os.Environ(), time.Now(), os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "gateway publish-key:", err)
			os.Exit(2)
		}
		return
	}
	// "gateway token NAME [-ttl 1h] [-ip ADDR]" prints a play token (see shared/pubauth).
	if len(os.Args) > 1 && os.Args[1] == "token" {
		if err := pubauth.TokenCommand(os.Args[2:], os.Environ(), time.Now(), os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "gateway token:", err)
			os.Exit(2)
		}
		return
	}
	cli.Main("gateway", run)
}

// gatedResolver answers Unavailable until the first registry snapshot: before it no name is
// known to be missing, and a 404 would tell players the stream does not exist. The first
// snapshot fills the table origin by origin (each verified whole), so a name found meanwhile
// is served: its origin lists it. The choice may differ from the one a full table makes
// (another origin listing the name may not be loaded yet), never the origin's validity.
type gatedResolver struct {
	table *resolve.Table
	ready func() bool
}

func (g gatedResolver) Resolve(req resolve.Request) resolve.Result {
	if !g.ready() {
		if r := g.table.Resolve(req); r.Outcome == resolve.OK {
			return r
		}
		return resolve.Result{Outcome: resolve.Unavailable}
	}
	return g.table.Resolve(req)
}

// Copies lists the copies of a name for HLS content steering, under the same gate as Resolve:
// before the first full read only a copy list whose first entry Resolve would answer.
func (g gatedResolver) Copies(req resolve.Request, dst []resolve.Copy) ([]resolve.Copy, resolve.Outcome) {
	copies, oc := g.table.Copies(req, dst)
	if !g.ready() && oc != resolve.OK {
		return copies[:0], resolve.Unavailable
	}
	return copies, oc
}

// Place chooses the origin for a publisher relayed by the gateway, under the same gate.
func (g gatedResolver) Place(req resolve.Request) resolve.Result {
	if !g.ready() {
		return resolve.Result{Outcome: resolve.Unavailable}
	}
	return g.table.Place(req)
}

// run wires everything from the config and serves until ctx is done.
func run(ctx context.Context, path string, env []string, logOut io.Writer) error {
	cfg, err := config.LoadGateway(path, env)
	if err != nil {
		return err
	}
	log := config.NewLogger(logOut, cfg.Log)
	slog.SetDefault(log)
	registry.RouteLibraryLogs(log)
	hook := pubauth.NewHook(cfg.Auth.HTTPURL, cfg.Auth.HTTPTimeout, cfg.Auth.HTTPCache)
	if cfg.Auth.PublishSecret == "" && hook == nil {
		log.Warn(pubauth.OpenWarning)
	}
	playAuth := pubauth.PlayAuthorizer(cfg.Auth.PlaySecret)
	log.Info("starting", "version", version, "namespace", registry.Namespace(cfg.ClusterKey))

	client, err := registry.Dial(cfg.Redis.URL)
	if err != nil {
		return fmt.Errorf("redis.url: %w", err)
	}
	defer client.Close()

	table := resolve.New(resolve.Options{Hysteresis: cfg.Balance.Hysteresis, SpillAt: cfg.Balance.SpillAt})
	watcher := registry.NewWatcher(client, cfg.ClusterKey, table, registry.WatcherOptions{
		AntiEntropy:  cfg.Registry.AntiEntropy,
		MaxClockSkew: cfg.Registry.MaxClockSkew,
		Logger:       log,
	})
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := watcher.Run(runCtx); err != nil {
			log.Error("registry watcher stopped", "err", err)
		}
	})
	// Whatever fails below, stop the watcher before returning.
	defer func() { cancelRun(); wg.Wait() }()

	promReg := admin.NewRegistry("gateway", version)
	promReg.MustRegister(cli.LogDroppedCounter(logOut))
	if err := adminapi.RegisterRegistryMetrics(promReg, adminapi.RegistryView{Stats: watcher.Stats, Size: table.Size}); err != nil {
		return err
	}
	metrics, err := gwmetrics.New(promReg)
	if err != nil {
		return err
	}
	proxies, err := cfg.TrustedProxies()
	if err != nil {
		return err
	}

	redirects := func(listener, addr string, tlsConf *tls.Config) (*httpgw.Server, error) {
		srv := &httpgw.Server{
			Address:           addr,
			Resolver:          gatedResolver{table, watcher.Ready},
			TLSConfig:         tlsConf,
			TrustedProxies:    proxies,
			StickyParam:       cfg.HTTP.StickyParam,
			AuthorizePlay:     playAuth,
			ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
			MaxConns:          cfg.HTTP.MaxConns,
			MaxConnsPerIP:     cfg.HTTP.MaxConnsPerIP,
			RetryAfter:        cfg.HTTP.RetryAfter,
			SteeringTTL:       cfg.HTTP.SteeringTTL,
			Logger:            log.With("listener", listener),
			Metrics:           metrics,
		}
		if cfg.HTTP.Steering {
			srv.Steering = gatedResolver{table, watcher.Ready}
		}
		if err := srv.Initialize(); err != nil {
			return nil, fmt.Errorf("listen.%s: %w", listener, err)
		}
		log.Info("listening", "listener", listener, "addr", srv.Addr().String(), "tls", tlsConf != nil)
		return srv, nil
	}
	web, err := redirects("http", cfg.Listen.HTTP, nil)
	if err != nil {
		return err
	}
	defer web.Close()
	if cfg.Listen.HTTPS != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return fmt.Errorf("tls.cert_file, tls.key_file: %w", err)
		}
		secure, err := redirects("https", cfg.Listen.HTTPS, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			return err
		}
		defer secure.Close()
	}

	if cfg.Listen.Admin != "" {
		adm := &admin.Server{
			Address:  cfg.Listen.Admin,
			Gatherer: promReg,
			Handlers: adminapi.HandlersWith(table, adminapi.NewRTMPPolicy(cfg.RTMP.Mode, cfg.RTMP.FollowFlashVer)),
			Logger:   log.With("listener", "admin"),
			// Ready until the copy has gone unconfirmed past registry.max_staleness (0: never);
			// a degraded copy is noted in the body and in peergate_registry_degraded.
			Ready: func() error {
				if err := watcher.CheckReady(cfg.Registry.MaxStaleness); err != nil {
					return fmt.Errorf("%w (registry.max_staleness)", err)
				}
				return nil
			},
			Note: func() string {
				if h := watcher.Health(); h.Degraded {
					return "degraded: " + h.String()
				}
				return ""
			},
		}
		if err := adm.Initialize(); err != nil {
			return fmt.Errorf("listen.admin: %w", err)
		}
		defer adm.Close()
		log.Info("listening", "listener", "admin", "addr", adm.Addr().String())
	}
	if cfg.Listen.RTSP != "" {
		rtsp := &rtspgw.Server{
			Address:       cfg.Listen.RTSP,
			Resolver:      gatedResolver{table, watcher.Ready},
			RetryAfter:    cfg.HTTP.RetryAfter,
			Authorize:     pubauth.PublishAuthorizer(cfg.Auth.PublishSecret, hook, "rtsp"),
			AuthorizePlay: playAuth,
			Logger:        log.With("listener", "rtsp"),
			Metrics:       metrics,

			FirstRequestTimeout: cfg.RTSP.FirstRequestTimeout,
			ReadTimeout:         cfg.RTSP.ReadTimeout,
			WriteTimeout:        cfg.RTSP.WriteTimeout,
			DialTimeout:         cfg.RTSP.DialTimeout,
			MaxConns:            cfg.RTSP.MaxConns,
			MaxConnsPerIP:       cfg.RTSP.MaxConnsPerIP,
		}
		if err := rtsp.Initialize(); err != nil {
			return fmt.Errorf("listen.rtsp: %w", err)
		}
		defer rtsp.Close()
		log.Info("listening", "listener", "rtsp", "addr", rtsp.Addr().String())
	}
	if cfg.Listen.RTMP != "" {
		rtmp := &rtmpgw.Server{
			Address:          cfg.Listen.RTMP,
			Resolver:         gatedResolver{table, watcher.Ready},
			Mode:             cfg.RTMP.Mode,
			FollowFlashVer:   cfg.RTMP.FollowFlashVer,
			HandshakeTimeout: cfg.RTMP.HandshakeTimeout,
			ReadTimeout:      cfg.RTMP.ReadTimeout,
			WriteTimeout:     cfg.RTMP.WriteTimeout,
			MaxConns:         cfg.RTMP.MaxConns,
			Authorize:        pubauth.PublishAuthorizer(cfg.Auth.PublishSecret, hook, "rtmp"),
			AuthorizePlay:    playAuth,
			Logger:           log.With("listener", "rtmp"),
			Metrics:          metrics,

			FirstRequestTimeout: cfg.RTMP.FirstRequestTimeout,
			MaxConnsPerIP:       cfg.RTMP.MaxConnsPerIP,
		}
		if err := rtmp.Initialize(); err != nil {
			return fmt.Errorf("listen.rtmp: %w", err)
		}
		defer rtmp.Close()
		log.Info("listening", "listener", "rtmp", "addr", rtmp.Addr().String(), "mode", rtmp.Mode)
	}

	<-ctx.Done()
	log.Info("stopping")
	return nil
}
