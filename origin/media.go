package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

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
type mediaStack struct {
	tbl   *media.Table
	odm   *ondemand.Manager
	hs    *httpsrv.Server
	rtsp  *rtspsrv.Server // nil when listen.rtsp is ""
	rtmp  *rtmpsrv.Server // nil when listen.rtmp is ""
	files []*filesrc.Source

	closeOnce sync.Once
}

// startMedia builds the table, starts the listeners (logging each bound address) and the file
// sources; reg gets the table's running/stopped events. On error everything started is closed.
// claim, if not nil, takes the cluster-wide publish claim before a publisher is accepted.
func startMedia(cfg *config.Origin, reg ondemand.Registry, claim func(context.Context, string) error, log *slog.Logger) (_ *mediaStack, err error) {
	var pulls []ondemand.Source
	for i, s := range cfg.Streams {
		if s.Kind() != config.SourcePull {
			continue
		}
		src := ondemand.Source{Name: s.Name, URL: s.Source}
		if err := ondemand.ValidateSource(src); err != nil {
			return nil, fmt.Errorf("streams[%d].source: %w", i, err)
		}
		pulls = append(pulls, src)
	}
	m := &mediaStack{}
	m.odm = &ondemand.Manager{
		Sources:     pulls,
		IdleTimeout: cfg.OnDemand.IdleTimeout,
		RetryMax:    cfg.OnDemand.RetryMax,
		Logger:      log,
	}
	ev := &ondemand.RegistryEvents{Registry: reg, OnDemand: m.odm}
	m.tbl = media.NewTable(media.Config{
		Events:       ev,
		Starter:      m.odm,
		StartTimeout: cfg.OnDemand.StartTimeout,
		MaxViewers:   cfg.Limits.MaxViewers,
		// RTSP and HLS viewers share one reader per stream; the rest have one each.
		MaxReaders: cfg.Limits.MaxViewers + 16,
	})
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	m.odm.Table = m.tbl
	if err := m.odm.Initialize(); err != nil {
		return m, fmt.Errorf("streams: %w", err)
	}

	lim := cfg.Limits
	m.hs = &httpsrv.Server{
		Address: cfg.Listen.HTTP,
		Table:   m.tbl,
		HLS: httpsrv.HLSConfig{
			Variant:             cfg.HLS.Variant,
			SegmentCount:        cfg.HLS.SegmentCount,
			SegmentDuration:     cfg.HLS.SegmentDuration,
			PartDuration:        cfg.HLS.PartDuration,
			FirstSegmentTimeout: cfg.HLS.FirstSegmentTimeout,
		},
		ReadHeaderTimeout: lim.HandshakeTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		MaxConns:          lim.MaxConns,
		AuthorizePlay:     pubauth.PlayAuthorizer(cfg.Auth.PlaySecret),
		MaxConnsPerIP:     lim.MaxConnsPerIP,
		FirstByteTimeout:  lim.FirstByteTimeout,
		Logger:            log,
	}
	if err := m.hs.Initialize(); err != nil {
		m.hs = nil
		return m, fmt.Errorf("listen.http: %w", err)
	}
	// Eager HLS muxers follow the table's events; set before any ingest can publish.
	ev.Also = append(ev.Also, m.hs)
	log.Info("listening", "listener", "http", "addr", m.hs.Addr().String())

	// One hook (and one decision cache) for both publish doors.
	hook := pubauth.NewHook(cfg.Auth.HTTPURL, cfg.Auth.HTTPTimeout, cfg.Auth.HTTPCache)
	if cfg.Listen.RTSP != "" {
		s := &rtspsrv.Server{
			Address:       cfg.Listen.RTSP,
			UDPRTPAddress: cfg.Listen.RTSPUDP,
			Table:         m.tbl,
			ReadTimeout:   lim.ReadTimeout,
			WriteTimeout:  lim.WriteTimeout,
			MaxConns:      lim.MaxConns,
			Authorize:     publishAuthorizer(pubauth.PublishAuthorizer(cfg.Auth.PublishSecret, hook, "rtsp"), claim),
			AuthorizePlay: pubauth.PlayAuthorizer(cfg.Auth.PlaySecret),
			Logger:        log,

			MaxConnsPerIP:    lim.MaxConnsPerIP,
			FirstByteTimeout: lim.FirstByteTimeout, // gortsplib waits IdleTimeout for a first request
		}
		if err := s.Initialize(); err != nil {
			return m, fmt.Errorf("listen.rtsp: %w", err)
		}
		m.rtsp = s
		rtp, rtcp := s.UDPPorts()
		log.Info("listening", "listener", "rtsp", "addr", s.Addr().String(), "udp_rtp", strconv.Itoa(rtp), "udp_rtcp", strconv.Itoa(rtcp))
	}
	if cfg.Listen.RTMP != "" {
		s := &rtmpsrv.Server{
			Address:          cfg.Listen.RTMP,
			Table:            m.tbl,
			HandshakeTimeout: lim.HandshakeTimeout,
			ReadTimeout:      lim.ReadTimeout,
			WriteTimeout:     lim.WriteTimeout,
			MaxConns:         lim.MaxConns,
			Authorize:        publishAuthorizer(pubauth.PublishAuthorizer(cfg.Auth.PublishSecret, hook, "rtmp"), claim),
			AuthorizePlay:    pubauth.PlayAuthorizer(cfg.Auth.PlaySecret),
			MaxConnsPerIP:    lim.MaxConnsPerIP,
			FirstByteTimeout: lim.FirstByteTimeout,
			Logger:           log,
		}
		if err := s.Initialize(); err != nil {
			return m, fmt.Errorf("listen.rtmp: %w", err)
		}
		m.rtmp = s
		log.Info("listening", "listener", "rtmp", "addr", s.Addr().String())
	}

	for i, st := range cfg.Streams {
		if st.Kind() != config.SourceFile {
			continue
		}
		src := &filesrc.Source{Name: st.Name, Path: st.FilePath(), Table: m.tbl, Logger: log}
		if err := src.Initialize(); err != nil {
			return m, fmt.Errorf("streams[%d].source: %w", i, err)
		}
		m.files = append(m.files, src)
	}
	return m, nil
}

// close stops ingest first (publishers leave, viewers get EOF), then the outputs, the pulls and the table.
func (m *mediaStack) close() { m.closeOnce.Do(m.closeAll) }

func (m *mediaStack) closeAll() {
	for _, f := range m.files {
		f.Close()
	}
	if m.rtmp != nil {
		m.rtmp.Close()
	}
	if m.rtsp != nil {
		m.rtsp.Close()
	}
	if m.hs != nil {
		m.hs.Close()
	}
	m.odm.Close()
	m.tbl.Close()
}

// viewers counts viewers over every protocol, for draining.
func (m *mediaStack) viewers() int64 { return m.tbl.Stats().Clients }
