package rtmpgw

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/handshake"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"

	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/shared/streamname"
)

// RTMP message types the gateway looks at.
const (
	typeSetChunkSize     = 1
	typeAbort            = 2
	typeAck              = 3
	typeUserControl      = 4
	typeWindowAckSize    = 5
	typeSetPeerBandwidth = 6
	typeCommandAMF3      = 17
	typeCommandAMF0      = 20

	ucStreamBegin      = 0
	ucStreamIsRecorded = 4
	ucPingRequest      = 6
	ucPingResponse     = 7

	csControl = 2 // chunk stream of protocol control messages
	csCommand = 3 // chunk stream of NetConnection commands
	csStatus  = 5 // chunk stream of NetStream status messages

	windowAckSize = 2500000
	chunkSize     = 65536
	maxChunkSize  = 10 << 20 // gortmplib's message cap; a larger chunk size is refused
	clientStream  = 1        // the message stream ID createStream gives every client
)

// wireID converts between the message stream ID on the wire (little-endian in chunk type 0)
// and the value gortmplib's chunk layer carries (it reads those four bytes big-endian).
func wireID(v uint32) uint32 { return bits.ReverseBytes32(v) }

// limitReader fails once its budget is spent; the budget is lifted once setup is over.
type limitReader struct {
	r    io.Reader
	mu   sync.Mutex
	left int64
}

var errSetupTooLarge = errors.New("too many bytes before play/publish")

func (l *limitReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	left := l.left
	l.mu.Unlock()
	if left <= 0 {
		return 0, errSetupTooLarge
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := l.r.Read(p)
	l.mu.Lock()
	if l.left != math.MaxInt64 {
		l.left -= int64(n)
	}
	l.mu.Unlock()
	return n, err
}

func (l *limitReader) lift() {
	l.mu.Lock()
	l.left = math.MaxInt64
	l.mu.Unlock()
}

// side is one RTMP connection of a session (the client, or the origin while relaying): a
// chunk reader owned by one goroutine and a chunk writer shared under a mutex, since acks and
// ping responses are written by the goroutine that reads.
type side struct {
	conn net.Conn
	bc   *bytecounter.ReadWriter
	r    *rawmessage.Reader
	wt   time.Duration

	wmu       sync.Mutex
	chunkSize uint32
	wbuf      []byte    // reused for one message's chunks
	deadline  time.Time // write deadline last set on conn
	written   atomic.Uint64

	readDeadline time.Time // read deadline last set on conn; only the reading goroutine uses it
}

func newSide(conn net.Conn, bc *bytecounter.ReadWriter, writeTimeout time.Duration) *side {
	sd := &side{conn: conn, bc: bc, wt: writeTimeout, chunkSize: 128}
	sd.r = rawmessage.NewReader(bc, bc.Reader, func(n uint32) error {
		return sd.writeControl(typeAck, be32(n))
	})
	return sd
}

// write sends one message within the write timeout. The deadline is moved only when it
// has come within 9/10 of the timeout, so a fast stream does not reset a timer per message.
func (sd *side) write(m *rawmessage.Message) error {
	sd.wmu.Lock()
	defer sd.wmu.Unlock()
	if sd.wt > 0 {
		if now := time.Now(); sd.deadline.Sub(now) < sd.wt*9/10 {
			sd.deadline = now.Add(sd.wt)
			if err := sd.conn.SetWriteDeadline(sd.deadline); err != nil {
				return err
			}
		}
	}
	b := sd.chunks(m)
	n, err := sd.conn.Write(b)
	sd.written.Add(uint64(n))
	return err
}

// maxKeptBuffer bounds the chunk buffer a side keeps between messages; a larger message gets
// a buffer of its own.
const maxKeptBuffer = 256 << 10

// chunks lays m out as chunks in one buffer: a type 0 header (absolute timestamp, so no
// per-chunk-stream header state can drift between the two hops) on the first chunk, type 3
// on the others. It is called with wmu held.
func (sd *side) chunks(m *rawmessage.Message) []byte {
	ts := uint32(m.Timestamp / time.Millisecond)
	ext := ts >= 0xffffff
	size := int(sd.chunkSize)
	n := max(1, (len(m.Body)+size-1)/size)
	need := 12 + len(m.Body) + (n - 1)
	if ext {
		need += 4 * n
	}
	b := sd.wbuf[:0]
	if cap(b) < need {
		b = make([]byte, 0, need)
		if need <= maxKeptBuffer {
			sd.wbuf = b
		}
	}
	cs := m.ChunkStreamID & 0x3f
	hts := ts
	if ext {
		hts = 0xffffff
	}
	b = append(b, cs, byte(hts>>16), byte(hts>>8), byte(hts),
		byte(len(m.Body)>>16), byte(len(m.Body)>>8), byte(len(m.Body)), m.Type)
	// gortmplib carries the stream ID with its bytes in wire order read big-endian.
	b = binary.BigEndian.AppendUint32(b, m.MessageStreamID)
	if ext {
		b = binary.BigEndian.AppendUint32(b, ts)
	}
	body := m.Body
	for i := 0; ; i++ {
		if i > 0 {
			b = append(b, 0xc0|cs)
			if ext {
				b = binary.BigEndian.AppendUint32(b, ts)
			}
		}
		k := min(size, len(body))
		b = append(b, body[:k]...)
		body = body[k:]
		if len(body) == 0 {
			return b
		}
	}
}

// setChunkSize announces and applies the chunk size the gateway writes with.
func (sd *side) setChunkSize(n uint32) error {
	if err := sd.writeControl(typeSetChunkSize, be32(n)); err != nil {
		return err
	}
	sd.wmu.Lock()
	sd.chunkSize = n
	sd.wmu.Unlock()
	return nil
}

func (sd *side) writeControl(typ uint8, body []byte) error {
	return sd.write(&rawmessage.Message{ChunkStreamID: csControl, Type: typ, Body: body})
}

// writeCommand sends an AMF0 command on chunk stream cs and message stream msid (wire value).
func (sd *side) writeCommand(cs byte, msid uint32, name string, tx float64, args ...any) error {
	body, err := append(amf0.Data{name, tx}, args...).Marshal()
	if err != nil {
		return err
	}
	return sd.write(&rawmessage.Message{ChunkStreamID: cs, Type: typeCommandAMF0, MessageStreamID: wireID(msid), Body: body})
}

// read returns the next message that is not protocol control of this hop: chunk size,
// abort, acknowledgements, window and bandwidth are applied or dropped here, pings answered.
// timeout > 0 bounds the wait.
func (sd *side) read(timeout time.Duration) (*rawmessage.Message, error) {
	for {
		if timeout > 0 {
			// Same economy as write: move the read deadline only when a tenth of it has passed.
			if now := time.Now(); sd.readDeadline.Sub(now) < timeout*9/10 {
				sd.readDeadline = now.Add(timeout)
				if err := sd.conn.SetReadDeadline(sd.readDeadline); err != nil {
					return nil, err
				}
			}
		}
		m, err := sd.r.Read()
		if err != nil {
			return nil, err
		}
		switch m.Type {
		case typeSetChunkSize:
			if len(m.Body) < 4 {
				return nil, errors.New("short SetChunkSize")
			}
			v := binary.BigEndian.Uint32(m.Body) & 0x7fffffff
			if v == 0 || v > maxChunkSize {
				return nil, fmt.Errorf("chunk size %d out of range", v)
			}
			if err := sd.r.SetChunkSize(v); err != nil {
				return nil, err
			}
		case typeAbort:
			if len(m.Body) >= 4 {
				sd.r.AbortChunkStream(binary.BigEndian.Uint32(m.Body))
			}
		case typeWindowAckSize:
			if len(m.Body) >= 4 {
				sd.r.SetWindowAckSize(binary.BigEndian.Uint32(m.Body))
			}
		case typeAck, typeSetPeerBandwidth:
		case typeUserControl:
			if len(m.Body) < 2 {
				return nil, errors.New("short user control message")
			}
			switch binary.BigEndian.Uint16(m.Body) {
			case ucPingRequest:
				resp := append([]byte{0, ucPingResponse}, m.Body[2:]...)
				if err := sd.writeControl(typeUserControl, resp); err != nil {
					return nil, err
				}
			case ucPingResponse:
			default:
				return m, nil
			}
		default:
			return m, nil
		}
	}
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// request is the play or publish a client asked for.
type request struct {
	ci      connectInfo
	connect amf0.Object // the client's connect command object, replayed to the origin
	cmd     command
	msg     *rawmessage.Message // the play/publish message as received
	publish bool
	app     string // app and stream key as NAME sees them (see splitApp), queries included
	key     string
	name    string
	query   string
}

// splitApp moves the last part of the app into the stream key when the key is empty: some
// clients (gortmplib's) send the whole path as the app and no key, which a server joins back
// into one URL. The client's connect and play still reach the origin as they were sent.
func splitApp(app, key string) (string, string) {
	if key != "" {
		return app, key
	}
	path, query, hasQuery := strings.Cut(app, "?")
	a, k, ok := strings.Cut(path, "/")
	if !ok {
		return app, key
	}
	if hasQuery {
		k += "?" + query
	}
	return a, k
}

func (r *request) role() string {
	if r.publish {
		return rolePublish
	}
	return rolePlay
}

// session runs one client connection from the handshake to its end.
func (s *Server) session(c net.Conn, cl *connLog) {
	start := time.Now()
	if err := c.SetDeadline(start.Add(min(s.FirstRequestTimeout, s.HandshakeTimeout))); err != nil {
		return
	}
	lr := &limitReader{r: c, left: int64(s.MaxSetupBytes)}
	bc := bytecounter.NewReadWriter(struct {
		io.Reader
		io.Writer
	}{lr, c})
	keyIn, _, err := handshake.DoServer(bc, false)
	if err != nil {
		cl.err = fmt.Errorf("handshake: %w", err)
		if !errors.Is(err, io.EOF) {
			cl.outcome = OutcomeBadRequest
			s.Metrics.Redirect(proto, OutcomeBadRequest)
		}
		return
	}
	if keyIn != nil {
		// RTMPE (encrypted handshake): no origin needs it and relaying it would mean RC4 both ways.
		cl.outcome, cl.err = OutcomeBadRequest, errors.New("RTMPE is not supported")
		s.Metrics.Redirect(proto, OutcomeBadRequest)
		return
	}
	if err := c.SetDeadline(start.Add(s.HandshakeTimeout)); err != nil {
		return
	}
	// Setup writes are bounded by the handshake deadline already set on c.
	client := newSide(c, bc, 0)
	req, err := s.setup(client, cl)
	if err != nil {
		cl.err = err
		if cl.outcome == "" && !errors.Is(err, io.EOF) {
			cl.outcome = OutcomeBadRequest
			s.Metrics.Redirect(proto, OutcomeBadRequest)
		}
		return
	}
	cl.role, cl.name = req.role(), req.name
	if req.name == "" {
		cl.outcome = OutcomeBadPath
		s.Metrics.Redirect(proto, OutcomeBadPath)
		if req.publish {
			s.fail(client, req, "NetStream.Publish.BadName", "invalid stream name")
		} else {
			s.fail(client, req, "NetStream.Play.StreamNotFound", "invalid stream name")
		}
		return
	}
	if req.publish && s.Authorize != nil {
		if err := s.Authorize(req.name, req.query, cl.client); err != nil {
			cl.outcome, cl.err = OutcomeUnauthorized, fmt.Errorf("unauthorized: %w", err)
			s.Metrics.Redirect(proto, OutcomeUnauthorized)
			s.fail(client, req, "NetStream.Publish.Unauthorized", "publish not authorized")
			return
		}
	}
	if !req.publish && s.AuthorizePlay != nil {
		if err := s.AuthorizePlay(req.name, req.query, cl.client); err != nil {
			cl.outcome, cl.err = OutcomeUnauthorized, fmt.Errorf("unauthorized: %w", err)
			s.Metrics.Redirect(proto, OutcomeUnauthorized)
			s.fail(client, req, "NetStream.Play.Failed", "play not authorized")
			return
		}
	}

	rq := resolve.Request{Name: req.name, Proto: resolve.ProtoRTMP, Client: cl.client, Arrival: !req.publish}
	t0 := time.Now()
	var res resolve.Result
	if req.publish {
		res = s.Resolver.Place(rq)
	} else {
		res = s.Resolver.Resolve(rq)
	}
	s.Metrics.ResolveDuration(proto, time.Since(t0))
	switch res.Outcome {
	case resolve.OK:
	case resolve.NotFound:
		if req.publish {
			// Place says NotFound only when no origin is registered at all.
			cl.outcome = OutcomeUnavailable
			s.Metrics.Redirect(proto, OutcomeUnavailable)
			s.fail(client, req, "NetStream.Publish.Failed", "no origin can take the stream now, retry later")
			return
		}
		cl.outcome = OutcomeNotFound
		s.Metrics.Redirect(proto, OutcomeNotFound)
		s.fail(client, req, "NetStream.Play.StreamNotFound", "stream not found")
		return
	case resolve.Unavailable:
		cl.outcome = OutcomeUnavailable
		s.Metrics.Redirect(proto, OutcomeUnavailable)
		if req.publish {
			s.fail(client, req, "NetStream.Publish.Failed", "no origin can take the stream now, retry later")
		} else {
			s.fail(client, req, "NetStream.Play.Failed", "no origin can serve the stream now, retry later")
		}
		return
	default:
		cl.outcome = OutcomeError
		s.Metrics.Redirect(proto, OutcomeError)
		s.fail(client, req, failCode(req), "internal error, retry later")
		return
	}
	cl.origin, cl.route = res.OriginID, res.RouteLog()
	// A redirect names the origin's public URL; the gateway's own relay connection goes to
	// its private address when it has one.
	redirect := s.redirects(req.ci)
	base := res.DialURL()
	if redirect {
		base = res.BaseURL
	}
	target, ok := newTarget(base, req)
	if !ok {
		cl.outcome = OutcomeBadOrigin
		s.Metrics.Redirect(proto, OutcomeBadOrigin)
		s.fail(client, req, failCode(req), "origin unavailable, retry later")
		return
	}
	if redirect {
		cl.mode = modeRedirect
		if err := s.redirect(client, req, target); err != nil {
			cl.err = err
		}
		cl.outcome = OutcomeOK
		s.Metrics.Redirect(proto, OutcomeOK)
		linger(c)
		return
	}
	cl.mode = modeRelay
	s.relay(client, lr, req, target, cl)
}

// redirects says whether this client gets a redirect rather than a relay.
func (s *Server) redirects(ci connectInfo) bool {
	switch s.Mode {
	case ModeRedirect:
		return true
	case ModeRelay:
		return false
	}
	return ci.followsReconnect() || matchFlashVer(s.FollowFlashVer, ci.flashVer)
}

func failCode(r *request) string {
	if r.publish {
		return "NetStream.Publish.Failed"
	}
	return "NetStream.Play.Failed"
}

// setup answers connect and createStream (and the commands encoders send around them) until
// play or publish. A request with an invalid NAME comes back with name "".
func (s *Server) setup(client *side, cl *connLog) (*request, error) {
	req := &request{}
	connected := false
	for {
		m, err := client.read(0)
		if err != nil {
			return nil, err
		}
		if m.Type != typeCommandAMF0 && m.Type != typeCommandAMF3 {
			if !connected {
				return nil, fmt.Errorf("message type %d before connect", m.Type)
			}
			continue
		}
		body := m.Body
		if m.Type == typeCommandAMF3 {
			// An AMF3 command message starts with a format byte, then AMF0.
			if len(body) == 0 {
				return nil, errBadCommand
			}
			body = body[1:]
		}
		cmd, err := parseCommand(body)
		if err != nil {
			return nil, err
		}
		if !connected {
			if cmd.name != "connect" {
				return nil, fmt.Errorf("%q before connect", cmd.name)
			}
			if req.ci, err = parseConnect(cmd); err != nil {
				return nil, err
			}
			req.connect, _ = objectOf(cmd.args[0])
			cl.flashVer, cl.capsEx = req.ci.flashVer, req.ci.capsEx
			if err := s.acceptConnect(client, m.ChunkStreamID, cmd.tx, req.ci); err != nil {
				return nil, err
			}
			connected = true
			continue
		}
		switch cmd.name {
		case "createStream":
			if err := client.writeCommand(m.ChunkStreamID, 0, "_result", cmd.tx, nil, float64(clientStream)); err != nil {
				return nil, err
			}
		case "releaseStream", "FCPublish", "FCUnpublish":
			// What SRS and nginx-rtmp answer; FFmpeg, OBS and librtmp only log it.
			if cmd.tx != 0 {
				if err := client.writeCommand(m.ChunkStreamID, 0, "_result", cmd.tx, nil, amf0.Undefined{}); err != nil {
					return nil, err
				}
			}
		case "play", "publish":
			key, err := streamArg(cmd)
			if err != nil {
				return nil, err
			}
			req.cmd, req.msg, req.publish = cmd, m, cmd.name == "publish"
			req.app, req.key = splitApp(req.ci.app, key)
			if name, query, ok := streamname.FromRTMP(req.app, req.key); ok {
				req.name, req.query = name, query
			}
			return req, nil
		default:
			// getStreamLength, _checkbw, deleteStream, closeStream...: nothing to answer
			// before a stream exists (nginx-rtmp does the same).
		}
	}
}

// acceptConnect answers connect the way media servers do: window, bandwidth, chunk size,
// then _result NetConnection.Connect.Success.
func (s *Server) acceptConnect(client *side, cs byte, tx float64, ci connectInfo) error {
	if err := client.writeControl(typeWindowAckSize, be32(windowAckSize)); err != nil {
		return err
	}
	if err := client.writeControl(typeSetPeerBandwidth, append(be32(windowAckSize), 2)); err != nil {
		return err
	}
	if err := client.setChunkSize(chunkSize); err != nil {
		return err
	}
	return client.writeCommand(cs, 0, "_result", tx,
		amf0.Object{
			{Key: "fmsVer", Value: "FMS/3,5,7,7009"},
			{Key: "capabilities", Value: float64(31)},
			{Key: "mode", Value: float64(1)},
		},
		amf0.Object{
			{Key: "level", Value: "status"},
			{Key: "code", Value: "NetConnection.Connect.Success"},
			{Key: "description", Value: "Connection succeeded."},
			{Key: "objectEncoding", Value: ci.objectEncoding},
		})
}

// fail sends an error onStatus on the client's stream and lingers for the client to read it.
func (s *Server) fail(client *side, req *request, code, description string) {
	_ = client.writeCommand(csStatus, wireID(req.msg.MessageStreamID), "onStatus", 0, nil, amf0.Object{
		{Key: "level", Value: "error"},
		{Key: "code", Value: code},
		{Key: "description", Value: description},
	})
	linger(client.conn)
}

// linger drains what the client still sends for a moment (until it closes, a second at most),
// so the last status is not lost to a reset: closing a socket with unread input sends RST.
func linger(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.CopyN(io.Discard, c, 64<<10)
}
