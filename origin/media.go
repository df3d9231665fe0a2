package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/peergate/peergate/origin/filesrc"
	"github.com/peergate/peergate/origin/httpsrv"
	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/origin/ondemand"
	"github.com/peergate/peergate/origin/rtmpsrv"
	"github.com/peergate/peergate/origin/rtspsrv"
	"github.com/peergate/peergate/shared/config"
	"github.com/peergate/peergate/shared/pubauth"
)

// mediaStack is the origin's stream table with everything that feeds it and reads from it.
// Every part gets what it needs when it is built, in this order, and nothing is set afterwards:
//
//  1. the on-demand manager: a pull publishes into the Table that demanded it, so the manager
//     is built first and is the Table's Starter;
//  2. the Table; main then adds the stream book as a receiver of its events (Table.Notify);
//  3. serve: the HTTP server (it follows the Table's events for its eager HLS muxers), RTSP,
//     RTMP and the file sources, each built from its settings function below.
//
// Started parts are closed in reverse order: ingest first, then outputs, pulls and the Table.
type mediaStack struct {
	tbl  *media.Table
	odm  *ondemand.Manager
	rtmp *rtmpsrv.Server  // nil when listen.rtmp is ""
	clu  ondemand.Cluster // registry lookups for cluster pull-through; nil without

	started   []interface{ Close() }
	closeOnce sync.Once
}

// newMedia builds the on-demand manager and the Table; nothing can publish yet. clu, when not
// nil, is the registry lookup for cluster pull-through (relays of the cluster's other streams).
func newMedia(cfg *config.Origin, clu ondemand.Cluster, log *slog.Logger) (*mediaStack, error) {
	var pulls []ondemand.Source
	for _, s := range cfg.SourceStreams(config.SourcePull) {
		pulls = append(pulls, ondemand.Source{Name: s.Name, URL: s.Source})
	}
	odm := &ondemand.Manager{
		Sources:     pulls,
		IdleTimeout: cfg.OnDemand.IdleTimeout,
		RetryMax:    cfg.OnDemand.RetryMax,
		Logger:      log,
		Cluster:     clu,
		Self:        cfg.ID,
	}
	if secret := cfg.Auth.PlaySecret; secret != "" {
		// Relay pulls carry a short-lived play token: the cluster's origins share the secret.
		odm.PlayToken = func(name string) string {
			return pubauth.TokenQuery(secret, name, time.Now().Add(time.Minute).Unix(), "")
		}
	}
	tbl := media.NewTable(media.Config{
		Starter:      odm,
		StartTimeout: cfg.OnDemand.StartTimeout,
		MaxViewers:   cfg.Limits.MaxViewers,
		// RTSP and HLS viewers share one reader per stream; the rest have one each.
		MaxReaders: cfg.Limits.MaxViewers + 16,
	})
	m := &mediaStack{tbl: tbl, odm: odm, clu: clu, started: []interface{ Close() }{tbl}}
	if err := m.start(odm); err != nil {
		m.close()
		return nil, fmt.Errorf("streams: %w", err)
	}
	return m, nil
}

// serve starts the listeners (logging each bound address), then the file sources. On error
// the caller closes the stack. claim, if not nil, takes the cluster-wide publish claim before
// a publisher is accepted.
func (m *mediaStack) serve(cfg *config.Origin, claim func(context.Context, string) error, log *slog.Logger) error {
	hs := httpServer(cfg, m.tbl, log)
	if m.clu != nil {
		hs.SequenceUpstream = m.relayHTTPUpstream
	}
	if err := m.start(hs); err != nil {
		return fmt.Errorf("listen.http: %w", err)
	}
	m.tbl.Notify(hs) // eager HLS muxers; before any ingest can publish
	log.Info("listening", "listener", "http", "addr", hs.Addr().String())
	// One hook (and one decision cache) for both publish doors.
	hook := pubauth.NewHook(cfg.Auth.HTTPURL, cfg.Auth.HTTPTimeout, cfg.Auth.HTTPCache)
	publish := func(proto string) func(name, query, client string) error {
		return publishAuthorizer(pubauth.PublishAuthorizer(cfg.Auth.PublishSecret, hook, proto), claim)
	}
	if cfg.Listen.RTSP != "" {
		s := rtspServer(cfg, m.tbl, publish("rtsp"), log)
		if err := m.start(s); err != nil {
			return fmt.Errorf("listen.rtsp: %w", err)
		}
		rtp, rtcp := s.UDPPorts()
		log.Info("listening", "listener", "rtsp", "addr", s.Addr().String(), "udp_rtp", strconv.Itoa(rtp), "udp_rtcp", strconv.Itoa(rtcp))
	}
	if cfg.Listen.RTMP != "" {
		s := rtmpServer(cfg, m.tbl, publish("rtmp"), log)
		if err := m.start(s); err != nil {
			return fmt.Errorf("listen.rtmp: %w", err)
		}
		log.Info("listening", "listener", "rtmp", "addr", s.Addr().String())
		m.rtmp = s
	}
	for i, st := range cfg.Streams {
		if st.Kind() != config.SourceFile {
			continue
		}
		if err := m.start(&filesrc.Source{Name: st.Name, Path: st.FilePath(), Table: m.tbl, Logger: log}); err != nil {
			return fmt.Errorf("streams[%d].source: %w", i, err)
		}
	}
	return nil
}

// relayHTTPUpstream is the HTTP base URL (private host, public port) of the origin name is
// relayed from here, for httpsrv's SequenceUpstream; false when name is no relay copy.
func (m *mediaStack) relayHTTPUpstream(name string) (string, bool) {
	id, ok := m.odm.RelayUpstream(name)
	if !ok {
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	carriers, err := m.clu.FindStream(ctx, name)
	if err != nil {
		return "", false
	}
	for i := range carriers {
		if c := &carriers[i]; c.Origin.ID == id {
			u := c.Origin.DialURL("http")
			return u, u != ""
		}
	}
	return "", false
}

// start initializes p and closes it with the stack.
func (m *mediaStack) start(p interface {
	Initialize() error
	Close()
}) error {
	if err := p.Initialize(); err != nil {
		return err
	}
	m.started = append(m.started, p)
	return nil
}

func httpServer(cfg *config.Origin, tbl *media.Table, log *slog.Logger) *httpsrv.Server {
	return &httpsrv.Server{
		Address: cfg.Listen.HTTP,
		Table:   tbl,
		HLS: httpsrv.HLSConfig{
			Variant:             cfg.HLS.Variant,
			SegmentCount:        cfg.HLS.SegmentCount,
			SegmentDuration:     cfg.HLS.SegmentDuration,
			PartDuration:        cfg.HLS.PartDuration,
			FirstSegmentTimeout: cfg.HLS.FirstSegmentTimeout,
		},
		ReadHeaderTimeout: cfg.Limits.HandshakeTimeout,
		ReadTimeout:       cfg.Limits.ReadTimeout,
		WriteTimeout:      cfg.Limits.WriteTimeout,
		MaxConns:          cfg.Limits.MaxConns,
		AuthorizePlay:     pubauth.PlayAuthorizer(cfg.Auth.PlaySecret),
		MaxConnsPerIP:     cfg.Limits.MaxConnsPerIP,
		FirstByteTimeout:  cfg.Limits.FirstByteTimeout,
		Logger:            log,
	}
}

func rtspServer(cfg *config.Origin, tbl *media.Table, publish func(name, query, client string) error, log *slog.Logger) *rtspsrv.Server {
	return &rtspsrv.Server{
		Address:       cfg.Listen.RTSP,
		UDPRTPAddress: cfg.Listen.RTSPUDP,
		Table:         tbl,
		ReadTimeout:   cfg.Limits.ReadTimeout,
		WriteTimeout:  cfg.Limits.WriteTimeout,
		MaxConns:      cfg.Limits.MaxConns,
		Authorize:     publish,
		AuthorizePlay: pubauth.PlayAuthorizer(cfg.Auth.PlaySecret),
		Logger:        log,

		MaxConnsPerIP:    cfg.Limits.MaxConnsPerIP,
		FirstByteTimeout: cfg.Limits.FirstByteTimeout, // gortsplib waits IdleTimeout for a first request
	}
}

func rtmpServer(cfg *config.Origin, tbl *media.Table, publish func(name, query, client string) error, log *slog.Logger) *rtmpsrv.Server {
	return &rtmpsrv.Server{
		Address:          cfg.Listen.RTMP,
		Table:            tbl,
		HandshakeTimeout: cfg.Limits.HandshakeTimeout,
		ReadTimeout:      cfg.Limits.ReadTimeout,
		WriteTimeout:     cfg.Limits.WriteTimeout,
		MaxConns:         cfg.Limits.MaxConns,
		Authorize:        publish,
		AuthorizePlay:    pubauth.PlayAuthorizer(cfg.Auth.PlaySecret),
		MaxConnsPerIP:    cfg.Limits.MaxConnsPerIP,
		FirstByteTimeout: cfg.Limits.FirstByteTimeout,
		ReconnectURL:     cfg.DrainReconnectURL,
		Logger:           log,
	}
}

// close stops every started part, the last started first. Safe to call twice.
func (m *mediaStack) close() {
	m.closeOnce.Do(func() {
		for i := len(m.started) - 1; i >= 0; i-- {
			m.started[i].Close()
		}
	})
}
