package rtmpgw

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/handshake"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"

	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/internal/poll"
)

// Test H.264 parameter sets (1280x720 SPS from mediacommon's tests) and a key frame.
var (
	testSPS = []byte{
		0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50,
		0x05, 0xbb, 0x01, 0x6c, 0x80, 0x00, 0x00, 0x03,
		0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18,
		0xcb,
	}
	testPPS = []byte{0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0}
)

func keyFrame(size int) [][]byte {
	idr := make([]byte, size)
	idr[0] = 0x65
	for i := 1; i < size; i++ {
		idr[i] = byte(i)
	}
	return [][]byte{testSPS, testPPS, idr}
}

// standIn is a stand-in origin: a gortmplib ServerConn server that plays H.264 frames to
// players and counts the frames publishers send. Stream paths pick the behaviour:
//   - ".../die": 20 frames, then the connection is closed (an origin that dies mid-relay);
//   - ".../flood": large frames as fast as possible (to stall a client that stops reading);
//   - anything else: a small frame every 10 ms until the player leaves.
type standIn struct {
	ln        net.Listener
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	received  atomic.Int64 // frames from publishers
	sessions  atomic.Int64
	lastURL   atomic.Value // string: the URL gortmplib joined for the last session
	frameSize int
}

func startStandIn(t testing.TB) *standIn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &standIn{ln: ln, conns: map[net.Conn]struct{}{}, frameSize: 2000}
	o.lastURL.Store("")
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.mu.Lock()
			o.conns[c] = struct{}{}
			o.mu.Unlock()
			o.wg.Add(1)
			go func() {
				defer o.wg.Done()
				defer func() {
					o.mu.Lock()
					delete(o.conns, c)
					o.mu.Unlock()
					c.Close()
				}()
				o.serve(c)
			}()
		}
	}()
	t.Cleanup(o.close)
	return o
}

func (o *standIn) base() string { return "rtmp://" + o.ln.Addr().String() }

func (o *standIn) close() {
	o.ln.Close()
	o.mu.Lock()
	for c := range o.conns {
		c.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
}

func (o *standIn) serve(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	sc := &gortmplib.ServerConn{RW: c}
	if err := sc.Initialize(); err != nil {
		return
	}
	if err := sc.Accept(); err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	o.sessions.Add(1)
	o.lastURL.Store(sc.URL.String())
	if sc.Publish {
		r := &gortmplib.Reader{Conn: sc}
		if err := r.Initialize(); err != nil {
			return
		}
		for _, tr := range r.Tracks() {
			if _, ok := tr.Codec.(*codecs.H264); ok {
				r.OnDataH264(tr, func(time.Duration, time.Duration, [][]byte) { o.received.Add(1) })
			}
		}
		for {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if err := r.Read(); err != nil {
				return
			}
		}
	}
	track := &gortmplib.Track{Codec: &codecs.H264{SPS: testSPS, PPS: testPPS}}
	w := &gortmplib.Writer{Conn: sc, Tracks: []*gortmplib.Track{track}}
	if err := w.Initialize(); err != nil {
		return
	}
	size, interval, limit := o.frameSize, 10*time.Millisecond, -1
	switch {
	case strings.HasSuffix(sc.URL.Path, "/die"):
		limit = 20
	case strings.HasSuffix(sc.URL.Path, "/flood"):
		size, interval = 256<<10, 0
	}
	au := keyFrame(size)
	for i := 0; limit < 0 || i < limit; i++ {
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		d := time.Duration(i) * 40 * time.Millisecond
		if err := w.WriteH264(track, d, d, au); err != nil {
			return
		}
		if interval > 0 {
			time.Sleep(interval)
		}
	}
}

// fakeResolver sends every name to one origin, except the names it lists otherwise.
type fakeResolver struct {
	base     string
	outcomes map[string]resolve.Outcome
	placed   atomic.Int64
	resolved atomic.Int64
}

func (f *fakeResolver) result(name string) resolve.Result {
	if o, ok := f.outcomes[name]; ok {
		return resolve.Result{Outcome: o}
	}
	return resolve.Result{Outcome: resolve.OK, OriginID: "o1", BaseURL: f.base, Scheme: "rtmp", Route: resolve.RouteOwner}
}

func (f *fakeResolver) Resolve(req resolve.Request) resolve.Result {
	f.resolved.Add(1)
	return f.result(req.Name)
}

func (f *fakeResolver) Place(req resolve.Request) resolve.Result {
	f.placed.Add(1)
	return f.result(req.Name)
}

// fakeMetrics records what the listener counts.
type fakeMetrics struct {
	mu        sync.Mutex
	redirects map[string]int
	relayEnds map[string]int
	active    int
	bytes     map[string]int64
}

func newFakeMetrics() *fakeMetrics {
	return &fakeMetrics{redirects: map[string]int{}, relayEnds: map[string]int{}, bytes: map[string]int64{}}
}

func (m *fakeMetrics) Redirect(p, outcome string) {
	m.mu.Lock()
	m.redirects[outcome]++
	m.mu.Unlock()
}
func (m *fakeMetrics) ResolveDuration(string, time.Duration) {}
func (m *fakeMetrics) RelayStart(string, string) {
	m.mu.Lock()
	m.active++
	m.mu.Unlock()
}
func (m *fakeMetrics) RelayEnd(p, role, outcome string) {
	m.mu.Lock()
	m.active--
	m.relayEnds[role+"/"+outcome]++
	m.mu.Unlock()
}
func (m *fakeMetrics) RelayBytes(p, dir string, n int64) {
	m.mu.Lock()
	m.bytes[dir] += n
	m.mu.Unlock()
}

func (m *fakeMetrics) relayEnd(key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.relayEnds[key]
}

func (m *fakeMetrics) redirect(outcome string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.redirects[outcome]
}

func startGateway(t testing.TB, s *Server) *Server {
	t.Helper()
	s.Address = "127.0.0.1:0"
	if s.HandshakeTimeout == 0 {
		s.HandshakeTimeout = 2 * time.Second
	}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func eventually(d time.Duration, cond func() bool) bool { return poll.Until(d, cond) }

// playFrames plays u with gortmplib's Client and returns once n H.264 frames were decoded.
func playFrames(u string, n int) error {
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &gortmplib.Client{URL: pu}
	if err := c.Initialize(ctx); err != nil {
		return err
	}
	defer c.Close()
	_ = c.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
	r := &gortmplib.Reader{Conn: c}
	if err := r.Initialize(); err != nil {
		return fmt.Errorf("reader: %w", err)
	}
	got := 0
	for _, tr := range r.Tracks() {
		if _, ok := tr.Codec.(*codecs.H264); ok {
			r.OnDataH264(tr, func(_, _ time.Duration, au [][]byte) {
				if len(au) > 0 && len(au[len(au)-1]) > 0 && au[len(au)-1][0]&0x1f == 5 {
					got++
				}
			})
		}
	}
	for got < n {
		if err := r.Read(); err != nil {
			return fmt.Errorf("after %d frames: %w", got, err)
		}
	}
	return nil
}

// publishFrames publishes n H.264 frames to u with gortmplib's Client.
func publishFrames(u string, n int) error {
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &gortmplib.Client{URL: pu, Publish: true}
	if err := c.Initialize(ctx); err != nil {
		return err
	}
	defer c.Close()
	_ = c.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
	track := &gortmplib.Track{Codec: &codecs.H264{SPS: testSPS, PPS: testPPS}}
	w := &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{track}}
	if err := w.Initialize(); err != nil {
		return err
	}
	au := keyFrame(1000)
	for i := range n {
		d := time.Duration(i) * 40 * time.Millisecond
		if err := w.WriteH264(track, d, d, au); err != nil {
			return err
		}
	}
	return nil
}

// rawClient is a test RTMP client on gortmplib's lower packages: it sends exactly the
// commands a test asks for and hands back every message as received.
type rawClient struct {
	conn net.Conn
	r    *rawmessage.Reader
	w    *rawmessage.Writer
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	bc := bytecounter.NewReadWriter(c)
	if _, _, err := handshake.DoClient(bc, false, false); err != nil {
		t.Fatal(err)
	}
	rc := &rawClient{conn: c, w: rawmessage.NewWriter(bc, bc.Writer, false)}
	rc.r = rawmessage.NewReader(bc, bc.Reader, func(uint32) error { return nil })
	return rc
}

func (c *rawClient) command(cs byte, msid uint32, d amf0.Data) error {
	body, err := d.Marshal()
	if err != nil {
		return err
	}
	return c.w.Write(&rawmessage.Message{ChunkStreamID: cs, Type: typeCommandAMF0, MessageStreamID: wireID(msid), Body: body})
}

// next returns the next message that is not chunk-layer control, applying SetChunkSize.
func (c *rawClient) next() (*rawmessage.Message, error) {
	for {
		m, err := c.r.Read()
		if err != nil {
			return nil, err
		}
		switch m.Type {
		case typeSetChunkSize:
			if err := c.r.SetChunkSize(binary.BigEndian.Uint32(m.Body)); err != nil {
				return nil, err
			}
		case typeWindowAckSize, typeSetPeerBandwidth, typeAck:
		default:
			return m, nil
		}
	}
}

// nextCommand skips to the next AMF0 command.
func (c *rawClient) nextCommand() (*rawmessage.Message, amf0.Data, error) {
	for {
		m, err := c.next()
		if err != nil {
			return nil, nil, err
		}
		if m.Type == typeCommandAMF0 {
			d, err := amf0.Unmarshal(m.Body)
			return m, d, err
		}
	}
}

// connectAndPlay sends connect (with capsEx when not negative) and createStream, waits for
// their results, then sends play or publish of stream.
func (c *rawClient) connectAndPlay(app, tcURL string, capsEx float64, flashVer, verb, stream string) error {
	obj := amf0.Object{{Key: "app", Value: app}, {Key: "flashVer", Value: flashVer}, {Key: "tcUrl", Value: tcURL}}
	if capsEx >= 0 {
		obj = append(obj, amf0.ObjectEntry{Key: "capsEx", Value: capsEx})
	}
	if err := c.command(3, 0, amf0.Data{"connect", float64(1), obj}); err != nil {
		return err
	}
	if _, d, err := c.nextCommand(); err != nil || d[0] != "_result" {
		return fmt.Errorf("connect: %v %v", d, err)
	}
	if err := c.command(3, 0, amf0.Data{"createStream", float64(2), nil}); err != nil {
		return err
	}
	if _, d, err := c.nextCommand(); err != nil || d[0] != "_result" || len(d) < 4 || d[3] != float64(1) {
		return fmt.Errorf("createStream: %v %v", d, err)
	}
	return c.command(8, 1, amf0.Data{verb, float64(3), nil, stream})
}

var errTimeout = errors.New("timeout")

// closedWithin reports whether the peer closes c within d (reading and discarding meanwhile).
func closedWithin(c net.Conn, d time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errTimeout
	}
	return nil
}
