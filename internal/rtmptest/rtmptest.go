// Package rtmptest is a minimal RTMP player for tests: it says in connect what capsEx it
// supports (gortmplib's Client cannot), plays one stream and reports the onStatus messages
// and media it receives.
package rtmptest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/handshake"
	"github.com/bluenviron/gortmplib/pkg/message"
)

// CapsExReconnect is the Enhanced RTMP v2 capsEx bit: the client follows
// NetConnection.Connect.ReconnectRequest.
const CapsExReconnect = 0x01

// Player is one RTMP play connection.
type Player struct {
	conn net.Conn
	mrw  *message.ReadWriter
}

// Play connects to rawURL (rtmp://host:port/app/stream), announcing capsEx in connect, and
// plays the stream; it returns once the server answered play with NetStream.Play.Start.
// Every step is bounded by timeout.
func Play(rawURL string, capsEx uint32, timeout time.Duration) (*Player, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	path := strings.TrimPrefix(u.Path, "/")
	i := strings.LastIndex(path, "/")
	if i <= 0 {
		return nil, fmt.Errorf("rtmptest: %q has no app/stream", rawURL)
	}
	app, stream := path[:i], path[i+1:]
	if u.RawQuery != "" {
		stream += "?" + u.RawQuery
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "1935")
	}
	conn, err := net.DialTimeout("tcp", host, timeout)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	bc := bytecounter.NewReadWriter(conn)
	if _, _, err := handshake.DoClient(bc, false, false); err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	p := &Player{conn: conn, mrw: message.NewReadWriter(bc, bc, false)}
	obj := amf0.Object{
		{Key: "app", Value: app},
		{Key: "flashVer", Value: "LNX 9,0,124,2"},
		{Key: "tcUrl", Value: u.Scheme + "://" + u.Host + "/" + app},
		{Key: "objectEncoding", Value: float64(0)},
		{Key: "capsEx", Value: float64(capsEx)},
	}
	steps := []struct {
		msg *message.CommandAMF0
		ok  func(*message.CommandAMF0) bool
	}{
		{&message.CommandAMF0{ChunkStreamID: 3, Name: "connect", CommandID: 1, Arguments: []any{obj}},
			func(c *message.CommandAMF0) bool { return c.Name == "_result" && c.CommandID == 1 }},
		{&message.CommandAMF0{ChunkStreamID: 3, Name: "createStream", CommandID: 2, Arguments: []any{nil}},
			func(c *message.CommandAMF0) bool { return c.Name == "_result" && c.CommandID == 2 }},
		{&message.CommandAMF0{ChunkStreamID: 4, MessageStreamID: 0x1000000, Name: "play", CommandID: 3, Arguments: []any{nil, stream}},
			func(c *message.CommandAMF0) bool { return statusCode(c) == "NetStream.Play.Start" }},
	}
	for _, st := range steps {
		if err := p.mrw.Write(st.msg); err != nil {
			conn.Close()
			return nil, err
		}
		for {
			msg, err := p.mrw.Read()
			if err != nil {
				conn.Close()
				return nil, fmt.Errorf("%s: %w", st.msg.Name, err)
			}
			c, ok := msg.(*message.CommandAMF0)
			if !ok {
				continue
			}
			if c.Name == "_error" || strings.Contains(statusCode(c), "Failed") || strings.Contains(statusCode(c), "NotFound") {
				conn.Close()
				return nil, fmt.Errorf("%s refused: %v", st.msg.Name, c.Arguments)
			}
			if st.ok(c) {
				break
			}
		}
	}
	return p, nil
}

// statusCode is the code of an onStatus command, "" for anything else.
func statusCode(c *message.CommandAMF0) string {
	if c.Name != "onStatus" || len(c.Arguments) < 2 {
		return ""
	}
	if o, ok := c.Arguments[1].(amf0.Object); ok {
		s, _ := o.GetString("code")
		return s
	}
	return ""
}

// Status is one onStatus the player received after play started.
type Status struct {
	Code  string
	TCURL string // the tcUrl entry, if any
}

// Next reads until a NetConnection onStatus arrives (counting media messages on the way;
// NetStream statuses belong to playing and are skipped) or timeout passes.
func (p *Player) Next(timeout time.Duration) (Status, int, error) {
	_ = p.conn.SetReadDeadline(time.Now().Add(timeout))
	media := 0
	for {
		msg, err := p.mrw.Read()
		if err != nil {
			return Status{}, media, err
		}
		switch m := msg.(type) {
		case *message.Video, *message.Audio:
			media++
		case *message.CommandAMF0:
			if code := statusCode(m); strings.HasPrefix(code, "NetConnection.") {
				o := m.Arguments[1].(amf0.Object)
				tc, _ := o.GetString("tcUrl")
				return Status{Code: code, TCURL: tc}, media, nil
			}
		}
	}
}

// Media reads for d and counts the audio and video messages; a read error other than the
// deadline ends it early and is returned.
func (p *Player) Media(d time.Duration) (int, error) {
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	n := 0
	for {
		msg, err := p.mrw.Read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return n, nil
			}
			return n, err
		}
		switch msg.(type) {
		case *message.Video, *message.Audio:
			n++
		}
	}
}

// Close closes the connection.
func (p *Player) Close() { p.conn.Close() }
