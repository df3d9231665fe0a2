package main

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peergate/peergate/shared/registry"
)

// registryOpTimeout bounds one Drain, Flush or Deregister call.
const registryOpTimeout = 5 * time.Second

// lifecycle is the origin's standing in the registry: registered, draining.
type lifecycle struct {
	reg      *registry.Registrar
	log      *slog.Logger
	rtmp     viewerMover // nil without an RTMP listener
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
		if lc.do(ctx, lc.reg.Flush, "registration pending") == nil {
			lc.flushed.Store(true)
			lc.log.Info("registered", append(attrs, "epoch", lc.reg.Epoch())...)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// viewerMover asks viewers to move to another origin (rtmpsrv.Server: Enhanced RTMP's
// ReconnectRequest to the players that follow it).
type viewerMover interface {
	Drain() int
	ReconnectRequests() int64
}

// drain publishes the draining state, asks the RTMP players that can to reconnect (once
// gateways know we drain, so they send them elsewhere), waits for the viewers to leave (up
// to timeout) and deregisters. Everyone is served until they leave or timeout.
func (lc *lifecycle) drain(viewers func() int64, timeout time.Duration) {
	lc.draining.Store(true)
	lc.do(context.Background(), lc.reg.Drain, "drain not published")
	if lc.rtmp != nil {
		lc.log.Info("rtmp players asked to reconnect", "players", lc.rtmp.Drain())
	}
	waitViewers(viewers, timeout, lc.log)
	lc.do(context.Background(), lc.reg.Deregister, "deregister failed; the record expires with its TTL")
}

// do runs one registry operation within registryOpTimeout, logging a failure as msg.
func (lc *lifecycle) do(ctx context.Context, op func(context.Context) error, msg string) error {
	ctx, cancel := context.WithTimeout(ctx, registryOpTimeout)
	defer cancel()
	err := op(ctx)
	if err != nil {
		lc.log.Warn(msg, "err", err)
	}
	return err
}

// collectors are the lifecycle's gauges.
func (lc *lifecycle) collectors() []prometheus.Collector {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	out := []prometheus.Collector{
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
	if lc.rtmp != nil {
		out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "peergate_origin_rtmp_reconnect_requests_total",
			Help: "NetConnection.Connect.ReconnectRequest messages sent to RTMP players while draining.",
		}, func() float64 { return float64(lc.rtmp.ReconnectRequests()) }))
	}
	return out
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
