// Package media is the origin's stream table: publishers write access units into live streams by NAME, readers take them from bounded per-reader queues.
//
// # Overview
//
// One Table holds every live Stream of an origin, keyed by NAME ("live/cam1"). Ingest
// (RTMP publish, RTSP record, file loops, on-demand pulls) and outputs (RTSP play, RTMP
// play, HLS, HTTP MPEG-TS) only meet here; they never talk to each other.
//
//	tbl := media.NewTable(media.Config{Starter: ondemandManager})
//	tbl.Notify(streamBook) // more receivers of the events, added before anything publishes
//	defer tbl.Close()
//
// # Publishing
//
//	st, err := tbl.Publish("live/cam1", []*media.Track{{Format: h264}, {Format: aac}})
//	if errors.Is(err, media.ErrAlreadyPublishing) { /* refuse: the first publisher keeps NAME */ }
//	defer st.Close()                         // the publisher leaves: readers get io.EOF
//	st.WriteUnit(media.Unit{Track: 0, PTS: pts, DTS: dts, AU: nalus})   // video
//	st.WriteUnit(media.Unit{Track: 1, PTS: pts, DTS: pts, Frame: aacAU}) // audio
//
// A publisher that learns its tracks only after accepting (RTMP reads them after
// NetStream.Publish.Start) claims the NAME first: c, err := tbl.Claim(name); then
// st, err := c.Publish(tracks), or c.Release() if it gives up. Readers see a NAME only once
// it has tracks; a reader asking for a claimed NAME waits for them (up to StartTimeout).
// WriteUnit may be called from several goroutines (RTSP delivers media per transport).
//
// Tracks carry gortsplib format types (*format.H264, *format.H265, *format.MPEG4Audio,
// *format.Opus; Supported tells) so RTSP uses them as they are; Track.HLSCodec and
// Track.RTMPCodec convert for gohlslib and gortmplib, TrackFromRTMP the other way. Timestamps are time.Duration on a per-stream timeline that only grows
// (DTS); media.ToClock converts to a clock rate without overflow. WriteUnit sets
// KeyFrame itself for H.264/H.265, keeps the format's SPS/PPS (VPS) current from in-band
// parameter sets, and prepends the parameter sets to key frames that lack them, so every
// output can start decoding at any key frame (PrepareAU does the same for depacketizers
// that need the SPS before WriteUnit, e.g. a DTS extractor). Units are shared between
// readers: nobody may modify a unit's byte slices after WriteUnit.
//
// # Wall clock
//
// Every unit leaves WriteUnit with Unit.NTP set: the source's own clock when the publisher
// gave one (an RTSP publisher's or upstream origin's sender reports, via PacketNTP), else an
// anchor taken at the stream's first unit plus the unit's PTS. All outputs read it (HLS
// PROGRAM-DATE-TIME, RTSP sender reports), so every output and every relay copy of a stream
// shows one clock. A source that will give its clock shortly (an RTSP pull) calls
// st.AwaitSourceClock(d) after Publish: until its first NTP, for at most d, units keep a
// zero NTP and outputs that need a clock skip them.
//
// # Reading
//
//	st, rd, err := tbl.Subscribe(ctx, "live/cam1", media.ReaderOptions{})
//	// err: ErrNotFound (unknown, or on-demand start timed out), ctx.Err()
//	defer rd.Close()
//	for {
//		u, err := rd.Read(ctx) // io.EOF: publisher left; ErrSlowReader: queue overflowed
//		...
//	}
//
// Each reader has a bounded queue (ReaderOptions.QueueLen units, default 1024). The
// publisher never waits for a reader: a reader whose queue is full is dropped (its Read
// returns ErrSlowReader) and the other readers go on. A new reader of a stream with video
// starts with the GOP cache (the last key frame and everything after it, bounded by
// Config.GOPCacheBytes, default 8 MiB), so it can decode at once; without a cached GOP it
// skips units until the next key frame. Table.Find returns the Stream without a reader
// (RTSP DESCRIBE needs the tracks only); Stream.AddReader adds one later.
//
// # On-demand
//
// Config.Starter, when set, is asked Demand(tbl, name) for a NAME that is not live (a source
// it starts publishes into tbl, so the Starter is built before the Table). If it answers
// true ("a source exists and was asked to start"), Find/Subscribe wait up to
// Config.StartTimeout (default 10 s) or the context for the publisher. Stream.Viewers says
// how many viewers a stream has, for idle-stop decisions.
//
// # Registry events and load
//
// Every receiver added with Table.Notify gets StreamRunning(name, meta) when a stream's
// first key frame arrives (the first unit for audio-only streams) and again when its
// measured bitrate moves by more than 25 %, and StreamStopped(name) when the publisher of
// an announced stream leaves. Calls come in order from one goroutine owned by the Table, never from a
// publisher, so a slow registry never stalls media. Viewers are counted per protocol:
// Stream.Join(protocol) returns a Viewer whose Sent(n) adds egress bytes and Leave()
// ends it (Table.AddEgress counts bytes that belong to no single viewer); Table.Stats()
// sums them per protocol (ProtoRTSP, ProtoRTMP, ProtoHLS, ProtoMPEGTS), and
// Table.NewLoadMeter().Sample() turns them into cluster.Load (clients, egress bit/s since
// the last sample, process CPU share of the whole machine) for the registrar's heartbeat.
//
// # Wiring in main.go
//
// Each part gets what it needs when it is built; nothing is assigned afterwards:
//
//	odm := &ondemand.Manager{Sources: pulls}          // no Table: Demand(tbl, name) passes it
//	tbl := media.NewTable(media.Config{Starter: odm}) // Load: tbl.NewLoadMeter().Sample
//	tbl.Notify(announce.NewBook(reg, static, odm))   // the registry's stream list
//	hs := &httpsrv.Server{Table: tbl}; hs.Initialize(); tbl.Notify(hs) // eager HLS muxers
//	rtsp := &rtspsrv.Server{Address: ":8555", UDPRTPAddress: ":8000", Table: tbl}
//	src := &filesrc.Source{Name: "demo", Path: "origin/testdata/demo.ts", Table: tbl}
//	// Initialize each; on shutdown Close sources and servers, then odm, then tbl.
package media
