// Package rtmpsrv serves RTMP on the origin: publish into the media table, play from it.
package rtmpsrv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/message"

	"github.com/peergate/peergate/internal/netcap"
	"github.com/peergate/peergate/origin/ingest"
	"github.com/peergate/peergate/origin/media"
)

// trackAnalysis is how much media gortmplib's Reader reads before it reports the tracks.
const trackAnalysis = 2 * time.Second

// Server is the origin's RTMP listener. Set the fields, then Start; Close stops everything.
type Server struct {
	// Address is the TCP listen address, e.g. ":1936" or "127.0.0.1:0".
	Address string
	// Table is the stream table. Required.
	Table *media.Table
	// HandshakeTimeout bounds the handshake, connect and the play/publish command; a publisher
	// gets 2 s more to send the track headers and the first 2 s of media, which gortmplib
	// reads before it reports the tracks. It defaults to 10 seconds.
	HandshakeTimeout time.Duration
	// ReadTimeout cuts a publisher that sends nothing (or stalls mid-message) this long.
	// It defaults to 10 seconds.
	ReadTimeout time.Duration
	// WriteTimeout cuts a player that does not take data this long. It defaults to 10 seconds.
	WriteTimeout time.Duration
	// MaxConns caps concurrent connections; extra ones are closed at once. It defaults to 1024.
	MaxConns int
	// MaxConnsPerIP caps concurrent connections from one client address; extra ones are
	// closed at once. It defaults to 256. Relayed sessions all come from their gateway's
	// address: size it for the relays one gateway carries to this origin.
	MaxConnsPerIP int
	// FirstByteTimeout closes a connection that sends nothing this long after accept,
	// whatever the protocol's own deadlines. It defaults to 5 seconds.
	FirstByteTimeout time.Duration
	// Authorize, if set, decides whether a publisher may publish NAME: it gets the NAME and
	// the query the publisher sent (on the stream key or the app, joined by "&"),
	// and a non-nil error refuses the publish (NetStream.Publish.Unauthorized, or BadName for
	// an error wrapping media.ErrAlreadyPublishing). Nil lets anyone publish (the default).
	Authorize func(name, query, client string) error
	// AuthorizePlay, if set, decides whether a player may play NAME: it gets the NAME, the
	// query the player sent (on the stream key or the app, joined by "&") and the client's
	// address, and a non-nil error refuses the play with NetStream.Play.Failed. Nil lets
	// anyone play (the default).
	AuthorizePlay func(name, query, client string) error
	// ReconnectURL is where Drain sends players that follow Enhanced RTMP's ReconnectRequest:
	// an rtmp:// or rtmps:// base URL (a gateway's, "rtmp://gw.example.com"), to which the
	// player's own app is appended for the tcUrl. Empty (the default) sends no tcUrl: the
	// player reconnects to the URL it used (through a gateway relay: the gateway).
	ReconnectURL string
	// Logger gets one line per connection outcome. It defaults to slog.Default().
	Logger *slog.Logger

	players    players
	reconnects atomic.Int64

	ln      *netcap.Listener
	ctx     context.Context
	cancel  context.CancelFunc
	conns   netcap.Group
	rejects netcap.RejectLog
}

// Initialize listens and serves in the background.
func (s *Server) Initialize() error {
	if s.Table == nil {
		return errors.New("rtmpsrv: Table is required")
	}
	if s.HandshakeTimeout <= 0 {
		s.HandshakeTimeout = 10 * time.Second
	}
	if s.ReadTimeout <= 0 {
		s.ReadTimeout = 10 * time.Second
	}
	if s.WriteTimeout <= 0 {
		s.WriteTimeout = 10 * time.Second
	}
	if s.MaxConns <= 0 {
		s.MaxConns = 1024
	}
	if s.MaxConnsPerIP <= 0 {
		s.MaxConnsPerIP = netcap.DefaultMaxPerIP
	}
	if s.FirstByteTimeout <= 0 {
		s.FirstByteTimeout = 5 * time.Second
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", s.Address)
	if err != nil {
		return fmt.Errorf("rtmpsrv: %w", err)
	}
	s.rejects = netcap.RejectLog{Logger: s.Logger, Msg: "rtmp connections refused"}
	s.ln = &netcap.Listener{Listener: ln, Max: int64(s.MaxConns), MaxPerIP: int64(s.MaxConnsPerIP),
		FirstByteTimeout: s.FirstByteTimeout, EvictSilentAfter: netcap.DefaultEvictSilentAfter, OnReject: s.rejects.Reject}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.conns.Serve(s.ln, s.handle)
	return nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting, closes every connection and waits for their goroutines.
func (s *Server) Close() {
	s.cancel()
	s.conns.Close()
}

// outcome is logged once per connection.
type outcome struct {
	role, name string
	err        error
}

func (s *Server) handle(c net.Conn) {
	start := time.Now()
	defer func() {
		// A library bug hit by hostile input must cost one connection, not the origin.
		if v := recover(); v != nil {
			s.Logger.Error("rtmp conn panic", "remote", c.RemoteAddr().String(), "panic", fmt.Sprint(v),
				"stack", string(debug.Stack()))
		}
	}()
	o := s.serve(c)
	lvl := slog.LevelInfo
	if o.err != nil && o.role == "" {
		// Failed before play/publish (silent, not RTMP, a scanner): anyone can cause these at
		// will, so they are not warnings (the gateway logs them at debug too).
		lvl = slog.LevelDebug
	}
	s.Logger.Log(context.Background(), lvl, "rtmp conn closed", "remote", c.RemoteAddr().String(),
		"role", o.role, "name", o.name, "dur", time.Since(start).Round(time.Millisecond).String(), "err", errString(o.err))
}

func (s *Server) serve(c net.Conn) outcome {
	_ = c.SetDeadline(time.Now().Add(s.HandshakeTimeout))
	sniff := &connectSniffer{ReadWriter: c}
	sc := &gortmplib.ServerConn{RW: sniff}
	if err := sc.Initialize(); err != nil {
		return outcome{err: fmt.Errorf("handshake/connect: %w", err)}
	}
	capsEx, app := sniff.connect()
	if err := sc.AcceptConn(); err != nil {
		return outcome{err: fmt.Errorf("connect: %w", err)}
	}
	name, query, ok := nameFromURL(sc.URL)
	if sc.Publish {
		if !ok {
			_ = writeStatus(sc, "NetStream.Publish.BadName", "invalid stream name")
			return outcome{role: "publisher", err: errors.New("invalid stream name")}
		}
		if s.Authorize != nil {
			if err := s.Authorize(name, query, c.RemoteAddr().String()); err != nil {
				if errors.Is(err, media.ErrAlreadyPublishing) { // published on another origin
					_ = writeStatus(sc, "NetStream.Publish.BadName", "stream "+name+" is already being published")
					return outcome{role: "publisher", name: name, err: err}
				}
				_ = writeStatus(sc, "NetStream.Publish.Unauthorized", "publish not authorized")
				return outcome{role: "publisher", name: name, err: fmt.Errorf("unauthorized: %w", err)}
			}
		}
		return outcome{role: "publisher", name: name, err: s.publish(c, sc, name)}
	}
	if !ok {
		_ = writeStatus(sc, "NetStream.Play.StreamNotFound", "invalid stream name")
		return outcome{role: "player", err: errors.New("invalid stream name")}
	}
	if s.AuthorizePlay != nil {
		if err := s.AuthorizePlay(name, query, c.RemoteAddr().String()); err != nil {
			_ = writeStatus(sc, "NetStream.Play.Failed", "play not authorized")
			return outcome{role: "player", name: name, err: fmt.Errorf("unauthorized: %w", err)}
		}
	}
	pl := &player{follows: capsEx&capsExReconnect != 0, app: app, ask: make(chan struct{}, 1)}
	return outcome{role: "player", name: name, err: s.play(c, sc, name, pl)}
}

// writeStatus answers play/publish with an error onStatus on the stream (message stream 1).
func writeStatus(sc *gortmplib.ServerConn, code, desc string) error {
	return sc.Write(&message.CommandAMF0{
		ChunkStreamID:   5,
		MessageStreamID: 0x1000000,
		Name:            "onStatus",
		CommandID:       0,
		Arguments: []any{
			nil,
			amf0.Object{
				{Key: "level", Value: "error"},
				{Key: "code", Value: code},
				{Key: "description", Value: desc},
			},
		},
	})
}

func (s *Server) publish(c net.Conn, sc *gortmplib.ServerConn, name string) error {
	claim, err := s.Table.Claim(name)
	if err != nil {
		if errors.Is(err, media.ErrAlreadyPublishing) {
			_ = writeStatus(sc, "NetStream.Publish.BadName", "stream "+name+" is already being published")
		} else {
			_ = writeStatus(sc, "NetStream.Publish.Failed", err.Error())
		}
		return err
	}
	defer claim.Release()

	// gortmplib buffers up to 2 s of media to find the tracks (and replays it afterwards);
	// fastTracks ends that early for publishers whose metadata names their tracks.
	_ = c.SetDeadline(time.Now().Add(s.HandshakeTimeout + trackAnalysis))
	if err := sc.AcceptAction(); err != nil { // NetStream.Publish.Start
		return err
	}
	ft := &fastTracks{Conn: sc}
	r := &gortmplib.Reader{Conn: ft}
	if err := r.Initialize(); err != nil {
		return fmt.Errorf("tracks: %w", err)
	}
	ft.analysed = true
	tracks, attach := ingest.RTMPTracks(r, func(err error) { s.Logger.Info("rtmp track skipped", "name", name, "err", err) })
	st, err := claim.Publish(tracks)
	if err != nil {
		return err
	}
	defer st.Close()
	attach(st)
	s.Logger.Info("rtmp publish", "name", name, "remote", c.RemoteAddr().String(), "codecs", st.Meta().Codecs)
	for {
		if s.ctx.Err() != nil {
			return s.ctx.Err()
		}
		// A publisher silent or stuck mid-message for ReadTimeout is cut off; the write side
		// (acknowledgements sent while reading) gets the same bound.
		_ = c.SetDeadline(time.Now().Add(s.ReadTimeout))
		if err := r.Read(); err != nil {
			return err
		}
	}
}

func (s *Server) play(c net.Conn, sc *gortmplib.ServerConn, name string, pl *player) error {
	st, err := s.Table.Find(s.ctx, name)
	// Find may wait out an on-demand start past the handshake deadline: the answer still goes out.
	_ = c.SetDeadline(time.Now().Add(s.WriteTimeout))
	if err != nil {
		if errors.Is(err, media.ErrNotFound) {
			_ = writeStatus(sc, "NetStream.Play.StreamNotFound", "stream "+name+" not found")
		} else {
			_ = writeStatus(sc, "NetStream.Play.Failed", err.Error())
		}
		return err
	}
	rd, err := st.AddReader(media.ReaderOptions{})
	if err != nil {
		_ = writeStatus(sc, "NetStream.Play.Failed", err.Error())
		return err
	}
	defer rd.Close()

	hubTracks := st.Tracks()
	out := make([]*gortmplib.Track, len(hubTracks))
	v, err := st.TryJoin(media.ProtoRTMP)
	if err != nil {
		_ = writeStatus(sc, "NetStream.Play.Failed", "stream "+name+" has too many viewers")
		return err
	}
	defer v.Leave()
	var list []*gortmplib.Track
	for i, t := range hubTracks {
		out[i] = &gortmplib.Track{Codec: t.RTMPCodec()}
		list = append(list, out[i])
	}
	_ = c.SetDeadline(time.Now().Add(s.WriteTimeout))
	w := &gortmplib.Writer{Conn: sc, Tracks: list}
	if err := w.Initialize(); err != nil { // sends NetStream.Play.Start and the track headers
		return err
	}
	_ = c.SetReadDeadline(time.Time{})

	s.Logger.Info("rtmp play", "name", name, "remote", c.RemoteAddr().String(), "follows_reconnect", pl.follows)
	s.players.add(pl)
	defer s.players.remove(pl)

	// The player's own messages (acks, pings) are read and dropped; a read error means it left.
	gone := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				gone <- err
				return
			}
		}
	}()
	defer func() {
		c.Close()
		<-gone
	}()

	sent := sc.BytesSent()
	var base time.Duration
	baseSet := false
	for {
		select {
		case <-s.ctx.Done():
			return s.ctx.Err()
		case err := <-gone:
			gone <- err // for the deferred wait
			return nil
		case <-pl.ask:
			// The origin drains: the player reconnects elsewhere when it likes; until it
			// leaves it is served as before.
			tc := s.reconnectTCURL(pl.app)
			_ = c.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
			if err := sc.Write(reconnectRequest(tc)); err != nil {
				return err
			}
			s.reconnects.Add(1)
			s.Logger.Info("rtmp reconnect requested", "name", name, "remote", c.RemoteAddr().String(), "tc_url", tc)
		case u, ok := <-rd.C():
			if !ok {
				return rd.Err()
			}
			if !baseSet {
				// RTMP timestamps are unsigned: start a second in, so audio a little older
				// than the first key frame still fits.
				base, baseSet = u.DTS-time.Second, true
			}
			pts, dts := max(u.PTS-base, 0), max(u.DTS-base, 0)
			_ = c.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
			t := out[u.Track]
			var err error
			switch t.Codec.(type) {
			case *codecs.H264:
				err = w.WriteH264(t, pts, dts, u.AU)
			case *codecs.H265:
				err = w.WriteH265(t, pts, dts, u.AU)
			case *codecs.MPEG4Audio:
				err = w.WriteMPEG4Audio(t, pts, u.Frame)
			case *codecs.Opus:
				err = w.WriteOpus(t, pts, u.Frame)
			}
			if err != nil {
				return err
			}
			now := sc.BytesSent()
			v.Sent(int(now - sent))
			sent = now
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
