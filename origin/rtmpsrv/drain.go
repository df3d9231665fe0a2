package rtmpsrv

import (
	"bytes"
	"io"
	"strings"
	"sync"

	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/message"
)

// capsExReconnect is the Enhanced RTMP v2 capsEx bit of a client that follows
// NetConnection.Connect.ReconnectRequest.
const capsExReconnect = 0x01

// codeReconnect is the Enhanced RTMP v2 status asking a client to reconnect (to tcUrl, or to
// the URL it used when there is none) without dropping its session.
const codeReconnect = "NetConnection.Connect.ReconnectRequest"

// maxSniff bounds the bytes kept to read connect's command object: a plain handshake
// (1 + 2 × 1536 bytes) and a connect message of a few KiB. A client sending more before
// connect simply counts as one without capsEx.
const maxSniff = 3073 + 16<<10

// connectSniffer keeps a copy of what the client sends until connect was read: gortmplib's
// ServerConn keeps app, tcUrl and flashVer of connect, but not capsEx, which says whether
// the client follows ReconnectRequest.
type connectSniffer struct {
	io.ReadWriter
	buf  []byte
	done bool
}

func (s *connectSniffer) Read(p []byte) (int, error) {
	n, err := s.ReadWriter.Read(p)
	if !s.done {
		if room := maxSniff - len(s.buf); room > 0 {
			s.buf = append(s.buf, p[:min(n, room)]...)
		}
	}
	return n, err
}

// connect parses the captured connect command and stops capturing: the client's capsEx and
// app (zero values when the connect cannot be read back, e.g. an encrypted handshake).
func (s *connectSniffer) connect() (capsEx uint32, app string) {
	b := s.buf
	s.done, s.buf = true, nil
	return parseConnect(b)
}

// parseConnect reads connect's capsEx and app from the first bytes a client sent: C0, C1
// and C2 of a plain handshake, then chunks up to the connect command.
func parseConnect(b []byte) (capsEx uint32, app string) {
	const hs = 1 + 2*1536
	if len(b) < hs || b[0] != 3 {
		return 0, ""
	}
	r := bytes.NewReader(b[hs:])
	mr := message.NewReader(r, bytecounter.NewReader(r), func(uint32) error { return nil })
	for range 16 {
		msg, err := mr.Read()
		if err != nil {
			return 0, ""
		}
		cmd, ok := msg.(*message.CommandAMF0)
		if !ok {
			continue
		}
		if cmd.Name != "connect" || len(cmd.Arguments) < 1 {
			return 0, ""
		}
		var obj amf0.Object
		switch o := cmd.Arguments[0].(type) {
		case amf0.Object:
			obj = o
		case amf0.ECMAArray:
			obj = amf0.Object(o)
		default:
			return 0, ""
		}
		if v, ok := obj.GetFloat64("capsEx"); ok && v >= 0 && v <= 1<<32-1 {
			capsEx = uint32(v)
		}
		app, _ = obj.GetString("app")
		return capsEx, app
	}
	return 0, ""
}

// player is one RTMP play session that may be asked to reconnect elsewhere.
type player struct {
	follows bool          // connect set capsExReconnect
	app     string        // connect's app, for the tcUrl on the gateway
	ask     chan struct{} // Drain asks the session's loop to send ReconnectRequest
}

// players are the live play sessions and the drain state.
type players struct {
	mu       sync.Mutex
	all      map[*player]struct{}
	draining bool
}

func (ps *players) add(p *player) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.all == nil {
		ps.all = map[*player]struct{}{}
	}
	ps.all[p] = struct{}{}
	if ps.draining && p.follows {
		p.ask <- struct{}{}
	}
}

func (ps *players) remove(p *player) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.all, p)
}

// Drain asks every RTMP player that follows Enhanced RTMP's ReconnectRequest (the reconnect
// bit of connect's capsEx) to reconnect: to ReconnectURL when set, else to the URL it used;
// players that start while draining are asked at once. Everyone, asked or not, is served on
// until they leave or Close. It returns the number of players asked now; it never blocks.
func (s *Server) Drain() int {
	s.players.mu.Lock()
	defer s.players.mu.Unlock()
	s.players.draining = true
	n := 0
	for p := range s.players.all {
		if !p.follows {
			continue
		}
		select {
		case p.ask <- struct{}{}:
			n++
		default: // already asked
		}
	}
	return n
}

// ReconnectRequests counts the ReconnectRequest messages sent so far.
func (s *Server) ReconnectRequests() int64 { return s.reconnects.Load() }

// reconnectTCURL is the tcUrl a drained player is sent to: ReconnectURL and the player's
// app; "" (no tcUrl: the client reconnects to the URL it used) without ReconnectURL.
func (s *Server) reconnectTCURL(app string) string {
	if s.ReconnectURL == "" {
		return ""
	}
	return strings.TrimRight(s.ReconnectURL, "/") + "/" + strings.TrimLeft(app, "/")
}

// reconnectRequest is the onStatus (NetConnection, transaction 0) asking a client to
// reconnect, to tcURL when it is not "".
func reconnectRequest(tcURL string) *message.CommandAMF0 {
	info := amf0.Object{
		{Key: "level", Value: "status"},
		{Key: "code", Value: codeReconnect},
		{Key: "description", Value: "origin draining; reconnect"},
	}
	if tcURL != "" {
		info = append(info, amf0.ObjectEntry{Key: "tcUrl", Value: tcURL})
		info[2].Value = "origin draining; reconnect to " + tcURL
	}
	return &message.CommandAMF0{ChunkStreamID: 3, MessageStreamID: 0, Name: "onStatus", CommandID: 0, Arguments: []any{nil, info}}
}
