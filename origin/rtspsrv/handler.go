package rtspsrv

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"

	"github.com/peergate/peergate/origin/media"
	"github.com/peergate/peergate/shared/streamname"
)

// statusConflict refuses a publisher on a live NAME. RTSP 1.0 has no "resource busy" code;
// every client fails on any 4xx and prints code and reason, and 409 Conflict says what
// happened, where 403 reads as "access denied" (FFmpeg, GStreamer) and 400 as a broken client.
const statusConflict base.StatusCode = 409

// session is what the handler keeps per RTSP session (publisher or reader).
type session struct {
	name string
	// publisher
	claim  *media.Claim
	tracks []*media.Track
	maps   []trackMap
	stream *media.Stream
	// reader
	out       *output
	viewer    *media.Viewer
	sentBytes uint64
	// counters logged when the session ends
	lost       uint64
	decodeErrs uint64
	overflowed bool
}

type handler struct {
	s   *Server
	log *slog.Logger

	mu       sync.Mutex
	outs     map[string]*output
	sessions map[*gortsplib.ServerSession]*session

	// setupMu lets one SETUP through at a time, from the request to its response.
	// gortsplib v5.5.0's ServerStream.readerAdd walks the media maps of every reader with the
	// same IP (looking for UDP port clashes) while those readers' sessions may still be
	// writing them at the end of their own SETUP: a data race, and a possible fatal
	// "concurrent map iteration and map write", when two players behind one address set up
	// at once. SETUPs are few and our OnSetup does not wait, so serializing them costs nothing.
	setupMu      sync.Mutex
	setupHolders sync.Map // *gortsplib.ServerConn holding setupMu -> struct{}

	// described holds, per connection, the NAME whose DESCRIBE passed AuthorizePlay: the
	// SETUP that follows on the same connection needs no token again (its URL is the
	// SDP's control URL, whose query gortsplib does not keep reliably).
	described sync.Map // *gortsplib.ServerConn -> string
}

func newHandler(s *Server) *handler {
	return &handler{
		s: s, log: s.Logger,
		outs:     map[string]*output{},
		sessions: map[*gortsplib.ServerSession]*session{},
	}
}

var (
	_ gortsplib.ServerHandlerOnResponse     = (*handler)(nil)
	_ gortsplib.ServerHandlerOnConnClose    = (*handler)(nil)
	_ gortsplib.ServerHandlerOnSessionOpen  = (*handler)(nil)
	_ gortsplib.ServerHandlerOnSessionClose = (*handler)(nil)
	_ gortsplib.ServerHandlerOnRequest      = (*handler)(nil)
	_ gortsplib.ServerHandlerOnDescribe     = (*handler)(nil)
	_ gortsplib.ServerHandlerOnAnnounce     = (*handler)(nil)
	_ gortsplib.ServerHandlerOnSetup        = (*handler)(nil)
	_ gortsplib.ServerHandlerOnPlay         = (*handler)(nil)
	_ gortsplib.ServerHandlerOnRecord       = (*handler)(nil)

	_ gortsplib.ServerHandlerOnPacketsLost      = (*handler)(nil)
	_ gortsplib.ServerHandlerOnDecodeError      = (*handler)(nil)
	_ gortsplib.ServerHandlerOnStreamWriteError = (*handler)(nil)
)

// OnPacketsLost counts inbound RTP loss (logged when the session ends, not per packet).
func (h *handler) OnPacketsLost(ctx *gortsplib.ServerHandlerOnPacketsLostCtx) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ses := h.sessions[ctx.Session]; ses != nil {
		ses.lost += ctx.Lost
	}
}

// OnDecodeError counts undecodable inbound packets (logged when the session ends).
func (h *handler) OnDecodeError(ctx *gortsplib.ServerHandlerOnDecodeErrorCtx) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ses := h.sessions[ctx.Session]; ses != nil {
		ses.decodeErrs++
	}
}

// OnStreamWriteError: a reader whose write queue overflowed cannot keep up; like a slow hub
// reader it is disconnected rather than left with a broken picture.
func (h *handler) OnStreamWriteError(ctx *gortsplib.ServerHandlerOnStreamWriteErrorCtx) {
	h.mu.Lock()
	ses := h.sessions[ctx.Session]
	first := ses != nil && !ses.overflowed
	if first {
		ses.overflowed = true
	}
	h.mu.Unlock()
	if first {
		ctx.Session.Close()
	}
}

func (h *handler) OnConnClose(ctx *gortsplib.ServerHandlerOnConnCloseCtx) {
	h.described.Delete(ctx.Conn)
	h.log.Info("rtsp conn closed", "remote", ctx.Conn.NetConn().RemoteAddr().String(), "err", errString(ctx.Error))
}

func (h *handler) OnRequest(sc *gortsplib.ServerConn, req *base.Request) {
	if lc, ok := sc.NetConn().(*limitConn); ok {
		lc.requestDone()
	}
	if req.Method == base.Setup {
		h.setupMu.Lock()
		h.setupHolders.Store(sc, struct{}{})
	}
}

// OnResponse ends a SETUP's turn (gortsplib calls it after the session has stored the media).
func (h *handler) OnResponse(sc *gortsplib.ServerConn, _ *base.Response) {
	if _, ok := h.setupHolders.LoadAndDelete(sc); ok {
		h.setupMu.Unlock()
	}
}

func (h *handler) OnSessionOpen(ctx *gortsplib.ServerHandlerOnSessionOpenCtx) {
	h.mu.Lock()
	h.sessions[ctx.Session] = &session{}
	h.mu.Unlock()
}

func (h *handler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	h.mu.Lock()
	ses := h.sessions[ctx.Session]
	delete(h.sessions, ctx.Session)
	if ses != nil && ses.out != nil {
		ses.out.refs--
		ses.out.lastUsed = time.Now()
	}
	h.mu.Unlock()
	if ses == nil {
		return
	}
	if ses.viewer != nil {
		h.countEgress(ctx.Session, ses)
		ses.viewer.Leave()
	}
	if ses.stream != nil {
		ses.stream.Close()
	}
	if ses.claim != nil {
		ses.claim.Release()
	}
	role := "reader"
	if ses.claim != nil {
		role = "publisher"
	}
	if ses.name != "" {
		h.mu.Lock()
		lost, decErrs, slow := ses.lost, ses.decodeErrs, ses.overflowed
		h.mu.Unlock()
		err := errString(ctx.Error)
		if slow {
			err = "reader too slow: write queue full"
		}
		h.log.Info("rtsp session closed", "name", ses.name, "role", role, "err", err,
			"rtp_lost", lost, "decode_errors", decErrs)
	}
}

func (h *handler) session(ss *gortsplib.ServerSession) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions[ss]
}

func (h *handler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	name, ok := streamname.FromRTSPPath(ctx.Path)
	if !ok {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	if h.s.AuthorizePlay != nil {
		// Before output: an unauthorized DESCRIBE must not start an on-demand pull.
		if err := h.s.AuthorizePlay(name, ctx.Query, remote(ctx.Conn)); err != nil {
			h.log.Info("rtsp play refused", "name", name, "remote", remote(ctx.Conn), "reason", "unauthorized: "+err.Error())
			return &base.Response{StatusCode: base.StatusForbidden}, nil, nil
		}
		h.described.Store(ctx.Conn, name)
	}
	out, err := h.output(name)
	if err != nil {
		return h.readError(err), nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, out.ss, nil
}

func (h *handler) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	name, ok := streamname.FromRTSPPath(ctx.Path)
	if !ok {
		return &base.Response{StatusCode: base.StatusBadRequest}, errors.New("invalid stream name")
	}
	if h.s.Authorize != nil {
		if err := h.s.Authorize(name, ctx.Query, remote(ctx.Conn)); err != nil {
			if errors.Is(err, media.ErrAlreadyPublishing) { // published on another origin
				h.log.Info("rtsp publish refused", "name", name, "remote", remote(ctx.Conn), "reason", err.Error())
				return &base.Response{StatusCode: statusConflict, StatusMessage: "Conflict: stream already published"}, err
			}
			// 403, not 401: there is no RTSP authentication scheme to retry with; the key
			// travels in the URL.
			h.log.Info("rtsp publish refused", "name", name, "remote", remote(ctx.Conn), "reason", "unauthorized: "+err.Error())
			return &base.Response{StatusCode: base.StatusForbidden}, fmt.Errorf("unauthorized: %w", err)
		}
	}
	ses := h.session(ctx.Session)
	if ses == nil {
		return &base.Response{StatusCode: base.StatusInternalServerError}, errors.New("unknown session")
	}
	tracks, maps := tracksFromDescription(ctx.Description)
	if len(tracks) == 0 {
		h.log.Info("rtsp publish refused", "name", name, "remote", remote(ctx.Conn), "reason", "no supported codec")
		return &base.Response{StatusCode: base.StatusUnsupportedMediaType}, errors.New("no supported codec")
	}
	claim, err := h.s.Table.Claim(name)
	if err != nil {
		h.log.Info("rtsp publish refused", "name", name, "remote", remote(ctx.Conn), "reason", err.Error())
		if errors.Is(err, media.ErrAlreadyPublishing) {
			return &base.Response{StatusCode: statusConflict, StatusMessage: "Conflict: stream already published"}, err
		}
		return &base.Response{StatusCode: base.StatusServiceUnavailable}, err
	}
	h.mu.Lock()
	ses.name, ses.claim, ses.tracks, ses.maps = name, claim, tracks, maps
	h.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (h *handler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	ses := h.session(ctx.Session)
	if ses == nil {
		return &base.Response{StatusCode: base.StatusInternalServerError}, nil, errors.New("unknown session")
	}
	name, ok := streamname.FromRTSPPath(ctx.Path)
	if !ok {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	if ses.out != nil && ses.name != name {
		return &base.Response{StatusCode: base.StatusBadRequest}, nil, errors.New("one stream per session")
	}
	out := ses.out
	if out == nil && h.s.AuthorizePlay != nil {
		if n, ok := h.described.Load(ctx.Conn); !ok || n.(string) != name {
			if err := h.s.AuthorizePlay(name, ctx.Query, remote(ctx.Conn)); err != nil {
				h.log.Info("rtsp play refused", "name", name, "remote", remote(ctx.Conn), "reason", "unauthorized: "+err.Error())
				return &base.Response{StatusCode: base.StatusForbidden}, nil, nil
			}
		}
	}
	if out == nil {
		var err error
		if out, err = h.output(name); err != nil {
			return h.readError(err), nil, nil
		}
		h.mu.Lock()
		out.refs++
		ses.out, ses.name = out, name
		h.mu.Unlock()
	}
	return &base.Response{StatusCode: base.StatusOK}, out.ss, nil
}

func (h *handler) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	ses := h.session(ctx.Session)
	if ses == nil || ses.out == nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, errors.New("play before setup")
	}
	h.mu.Lock()
	if ses.viewer == nil {
		v, err := ses.out.st.TryJoin(media.ProtoRTSP)
		if err != nil {
			h.mu.Unlock()
			return &base.Response{StatusCode: base.StatusServiceUnavailable}, err
		}
		ses.viewer = v
	}
	h.mu.Unlock()
	h.markStreaming(ctx.Conn, ctx.Session)
	h.log.Info("rtsp play", "name", ses.name, "remote", remote(ctx.Conn), "transport", transportName(ctx.Session),
		"user_agent", userAgent(ctx.Request))
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (h *handler) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	ses := h.session(ctx.Session)
	if ses == nil || ses.claim == nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, errors.New("record before announce")
	}
	st, err := ses.claim.Publish(ses.tracks)
	if err != nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, err
	}
	h.mu.Lock()
	ses.stream = st
	h.mu.Unlock()
	if err := attachDecoders(ctx.Session, st, ses.maps, h.log); err != nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, err
	}
	h.markStreaming(ctx.Conn, ctx.Session)
	h.log.Info("rtsp publish", "name", ses.name, "remote", remote(ctx.Conn), "transport", transportName(ctx.Session),
		"codecs", st.Meta().Codecs)
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// markStreaming lifts the request-size budget once media flows interleaved on the connection.
func (h *handler) markStreaming(sc *gortsplib.ServerConn, ss *gortsplib.ServerSession) {
	tr := ss.Transport()
	if tr == nil || tr.Protocol != gortsplib.ProtocolTCP {
		return
	}
	if lc, ok := sc.NetConn().(*limitConn); ok {
		lc.streaming.Store(true)
	}
}

// readError maps hub errors to RTSP statuses.
func (h *handler) readError(err error) *base.Response {
	switch {
	case errors.Is(err, media.ErrNotFound), errors.Is(err, media.ErrStreamClosed):
		return &base.Response{StatusCode: base.StatusNotFound}
	case errors.Is(err, media.ErrTooManyReaders):
		return &base.Response{StatusCode: base.StatusServiceUnavailable}
	}
	return &base.Response{StatusCode: base.StatusServiceUnavailable}
}

// janitor counts egress bytes every second and closes RTP feeds nobody reads.
func (h *handler) janitor() {
	defer h.s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-h.s.ctx.Done():
			return
		case now := <-t.C:
			h.mu.Lock()
			type pv struct {
				ss  *gortsplib.ServerSession
				ses *session
			}
			var playing []pv
			for ss, ses := range h.sessions {
				if ses.viewer != nil {
					playing = append(playing, pv{ss, ses})
				}
			}
			var idle []*output
			for name, o := range h.outs {
				if o.refs == 0 && now.Sub(o.lastUsed) > h.s.OutputIdle {
					delete(h.outs, name)
					idle = append(idle, o)
				}
			}
			h.mu.Unlock()
			for _, p := range playing {
				h.countEgress(p.ss, p.ses)
			}
			for _, o := range idle {
				o.close()
			}
		}
	}
}

func (h *handler) countEgress(ss *gortsplib.ServerSession, ses *session) {
	st := ss.Stats()
	h.mu.Lock()
	d := st.OutboundBytes - ses.sentBytes
	ses.sentBytes = st.OutboundBytes
	h.mu.Unlock()
	if d > 0 && d < 1<<40 {
		ses.viewer.Sent(int(d))
	}
}

func remote(sc *gortsplib.ServerConn) string { return sc.NetConn().RemoteAddr().String() }

func transportName(ss *gortsplib.ServerSession) string {
	if tr := ss.Transport(); tr != nil {
		return tr.Protocol.String()
	}
	return ""
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// tracksFromDescription picks the first supported format of each media.
func tracksFromDescription(desc *description.Session) ([]*media.Track, []trackMap) {
	var tracks []*media.Track
	var maps []trackMap
	for _, m := range desc.Medias {
		for _, f := range m.Formats {
			if media.Supported(f) {
				maps = append(maps, trackMap{media: m, format: f, track: len(tracks)})
				tracks = append(tracks, &media.Track{Format: f})
				break
			}
		}
	}
	return tracks, maps
}

// userAgent is the request's User-Agent for the log, bounded ("" when absent); an origin's
// cluster relay pulls say "peergate-origin".
func userAgent(req *base.Request) string {
	if req == nil {
		return ""
	}
	v := req.Header["User-Agent"]
	if len(v) == 0 {
		return ""
	}
	ua := v[0]
	if len(ua) > 128 {
		ua = ua[:128]
	}
	return ua
}
