package rtmpgw

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/handshake"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"

	"github.com/peergate/peergate/gateway/gwmetrics"
)

// metricsFlushBytes is how many relayed bytes accumulate before they are added to the metric.
const metricsFlushBytes = 1 << 20

// originReadBuffer is the read buffer of an origin connection.
const originReadBuffer = 64 << 10

// closeGrace bounds the wait for the origin to close after the client hung up.
const closeGrace = 2 * time.Second

// relay connects to the origin, replays connect, createStream and the client's play or
// publish there, then passes messages both ways until either side ends.
func (s *Server) relay(client *side, lr *limitReader, req *request, t target, cl *connLog) {
	role := req.role()
	s.Metrics.RelayStart(proto, role)
	outcome := OutcomeOriginFailed
	defer func() {
		cl.outcome = outcome
		s.Metrics.RelayEnd(proto, role, outcome)
	}()

	origin, originStream, err := s.dialOrigin(req, t)
	if err != nil {
		cl.err = fmt.Errorf("origin: %w", err)
		s.fail(client, req, failCode(req), "origin unavailable, retry later")
		return
	}
	defer func() {
		s.untrack(origin.conn)
		origin.conn.Close()
	}()

	// Setup is over: media flows without a byte budget, under per-message deadlines.
	lr.lift()
	// The handshake deadline goes; write() and read() set their own from here on (the
	// origin's write deadline is already write()'s).
	_ = client.conn.SetDeadline(time.Time{})
	_ = origin.conn.SetReadDeadline(time.Time{})
	client.wmu.Lock()
	client.wt, client.deadline = s.WriteTimeout, time.Time{}
	client.wmu.Unlock()

	// The side that sends media gets the read timeout; the other may stay quiet for the
	// whole session (a player sends nothing but acks), its liveness shows in write deadlines.
	upTimeout, downTimeout := time.Duration(0), s.ReadTimeout
	if req.publish {
		upTimeout, downTimeout = s.ReadTimeout, 0
	}
	var (
		once  sync.Once
		first pumpErr
		wg    sync.WaitGroup
	)
	end := func(e pumpErr) {
		once.Do(func() {
			first = e
			if e.read && !e.origin && errors.Is(e.err, io.EOF) {
				// The client hung up cleanly: let the origin read all it was sent before
				// it sees the end (closing with its acks unread would reset the connection
				// and lose the publisher's last frames), and give it a moment to close.
				if cw, ok := origin.conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
					_ = origin.conn.SetReadDeadline(time.Now().Add(closeGrace))
					return
				}
			}
			client.conn.Close()
			origin.conn.Close()
		})
	}
	up := &pump{s: s, from: client, to: origin, fromID: clientStream, toID: originStream, timeout: upTimeout, dir: gwmetrics.ToOrigin}
	down := &pump{s: s, from: origin, to: client, fromID: originStream, toID: clientStream, timeout: downTimeout, dir: gwmetrics.ToClient}
	up.start()
	down.start()
	// The play/publish itself goes first, under the origin's stream ID.
	replay := *req.msg
	replay.MessageStreamID = wireID(originStream)
	if err := origin.write(&replay); err != nil {
		end(pumpErr{err: err, origin: true})
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			end(up.run())
		}()
		end(down.run())
	}
	wg.Wait()
	client.conn.Close()
	origin.conn.Close()
	up.flush()
	down.flush()
	cl.toOrigin, cl.toClient = up.total, down.total

	cl.err = first.err
	outcome = first.outcome()
}

// outcome names how a relay ended from the error that ended it first.
func (e pumpErr) outcome() string {
	switch {
	case e.origin:
		return OutcomeOriginFailed
	case errors.Is(e.err, os.ErrDeadlineExceeded) || !e.read:
		// Stalled past a deadline, or gone while the gateway was writing to it.
		return OutcomeClientGone
	case errors.Is(e.err, io.EOF) || errors.Is(e.err, net.ErrClosed) || errors.Is(e.err, syscall.ECONNRESET):
		return OutcomeOK
	}
	// The client sent something RTMP does not allow (a message over the cap, a bad chunk).
	return OutcomeBadRequest
}

// dialOrigin opens the origin connection and does handshake, connect and createStream; it
// returns the origin side and the message stream ID the origin gave.
func (s *Server) dialOrigin(req *request, t target) (*side, uint32, error) {
	deadline := time.Now().Add(s.HandshakeTimeout)
	d := net.Dialer{Deadline: deadline}
	nc, err := d.Dial("tcp", t.host)
	if err != nil {
		return nil, 0, err
	}
	if t.scheme == "rtmps" {
		conf := &tls.Config{}
		if s.OriginTLSConfig != nil {
			conf = s.OriginTLSConfig.Clone()
		}
		if conf.ServerName == "" {
			conf.ServerName, _, _ = net.SplitHostPort(t.host)
		}
		nc = tls.Client(nc, conf)
	}
	if !s.track(nc) {
		nc.Close()
		return nil, 0, net.ErrClosed
	}
	fail := func(err error) (*side, uint32, error) {
		s.untrack(nc)
		nc.Close()
		return nil, 0, err
	}
	if err := nc.SetDeadline(deadline); err != nil {
		return fail(err)
	}
	// A larger read buffer than gortmplib's 4 KiB: the origin is the side that sends media to
	// players, and fewer reads per message is most of what the relay costs.
	bc := bytecounter.NewReadWriter(struct {
		io.Reader
		io.Writer
	}{bufio.NewReaderSize(nc, originReadBuffer), nc})
	if _, _, err := handshake.DoClient(bc, false, false); err != nil {
		return fail(fmt.Errorf("handshake: %w", err))
	}
	o := newSide(nc, bc, s.WriteTimeout)
	if err := o.writeControl(typeWindowAckSize, be32(windowAckSize)); err != nil {
		return fail(err)
	}
	if err := o.setChunkSize(chunkSize); err != nil {
		return fail(err)
	}
	// The client's own connect object, with the origin's tcUrl: codecs, fourCcList and
	// flashVer reach the origin as the client sent them.
	obj := make(amf0.Object, 0, len(req.connect))
	for _, e := range req.connect {
		if e.Key == "tcUrl" || e.Key == "tcurl" {
			e.Value = t.tcURL
		}
		obj = append(obj, e)
	}
	if err := o.writeCommand(csCommand, 0, "connect", 1, obj); err != nil {
		return fail(err)
	}
	if res, err := o.result(1); err != nil {
		return fail(err)
	} else if res.name != "_result" {
		return fail(fmt.Errorf("connect: %s %s", res.name, statusCode(res)))
	}
	if err := o.writeCommand(csCommand, 0, "createStream", 2, nil); err != nil {
		return fail(err)
	}
	res, err := o.result(2)
	if err != nil {
		return fail(err)
	}
	id, ok := float64(0), false
	if len(res.args) >= 2 {
		id, ok = res.args[1].(float64)
	}
	if res.name != "_result" || !ok || id < 1 || id > 1<<24 {
		return fail(fmt.Errorf("createStream: %s %v", res.name, res.args))
	}
	return o, uint32(id), nil
}

// result waits for the _result or _error of transaction tx.
func (sd *side) result(tx float64) (command, error) {
	for {
		m, err := sd.read(0)
		if err != nil {
			return command{}, err
		}
		if m.Type != typeCommandAMF0 {
			continue
		}
		c, err := parseCommand(m.Body)
		if err != nil {
			return command{}, err
		}
		if c.tx == tx && (c.name == "_result" || c.name == "_error") {
			return c, nil
		}
	}
}

func statusCode(c command) string {
	for _, a := range c.args {
		if o, ok := objectOf(a); ok {
			if code, ok := o.GetString("code"); ok {
				return code
			}
		}
	}
	return ""
}

// pumpErr is why a pump stopped, and whether the origin side caused it.
type pumpErr struct {
	err    error
	origin bool // the origin side failed
	read   bool // reading failed (else writing)
}

// pump moves messages from one side to the other, mapping the play/publish message stream
// ID between the client's and the origin's. Reading waits while the write blocks: the
// sockets' buffers are the only queue, so a slow reader slows the writer (and a stalled one
// is cut by the write deadline).
type pump struct {
	s             *Server
	from, to      *side
	fromID, toID  uint32
	timeout       time.Duration
	dir           string
	base, flushed uint64
	total         int64
	baseSet       bool
}

func (p *pump) run() (pe pumpErr) {
	defer func() {
		if r := recover(); r != nil {
			p.s.Logger.Error("rtmp relay panic", "panic", fmt.Sprint(r))
			pe = pumpErr{err: fmt.Errorf("panic: %v", r)}
		}
	}()
	fromOrigin := p.dir == gwmetrics.ToClient
	for {
		m, err := p.from.read(p.timeout)
		if err != nil {
			return pumpErr{err: err, origin: fromOrigin, read: true}
		}
		p.mapIDs(m)
		if err := p.to.write(m); err != nil {
			return pumpErr{err: err, origin: !fromOrigin}
		}
		if n := p.to.written.Load(); n-p.flushed >= metricsFlushBytes {
			p.s.Metrics.RelayBytes(proto, p.dir, int64(n-p.flushed))
			p.flushed = n
		}
	}
}

// start marks where the pump's byte count begins.
func (p *pump) start() {
	p.base = p.to.written.Load()
	p.flushed, p.baseSet = p.base, true
}

// flush adds the bytes not yet counted and records the total.
func (p *pump) flush() {
	if !p.baseSet {
		return
	}
	n := p.to.written.Load()
	p.s.Metrics.RelayBytes(proto, p.dir, int64(n-p.flushed))
	p.flushed = n
	p.total = int64(n - p.base)
}

// mapIDs rewrites the stream ID of the relayed stream in the message header, in user control
// events that name it, and in deleteStream.
func (p *pump) mapIDs(m *rawmessage.Message) {
	if m.MessageStreamID != 0 && wireID(m.MessageStreamID) == p.fromID {
		m.MessageStreamID = wireID(p.toID)
	}
	switch m.Type {
	case typeUserControl:
		if len(m.Body) >= 6 && binary.BigEndian.Uint16(m.Body) <= ucStreamIsRecorded &&
			binary.BigEndian.Uint32(m.Body[2:]) == p.fromID {
			binary.BigEndian.PutUint32(m.Body[2:], p.toID)
		}
	case typeCommandAMF0:
		if len(m.Body) > 16 && string(m.Body[3:15]) == "deleteStream" {
			c, err := parseCommand(m.Body)
			if err != nil || len(c.args) < 2 {
				return
			}
			if id, ok := c.args[1].(float64); ok && id == float64(p.fromID) {
				c.args[1] = float64(p.toID)
				if b, err := append(amf0.Data{c.name, c.tx}, c.args...).Marshal(); err == nil {
					m.Body = b
				}
			}
		}
	}
}
