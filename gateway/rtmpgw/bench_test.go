package rtmpgw

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"
)

// BenchmarkRedirect: full handshake, connect, createStream and play, answered with the
// redirect; a new connection each time.
func BenchmarkRedirect(b *testing.B) {
	gw := startGateway(b, &Server{Resolver: &fakeResolver{base: "rtmp://origin.example:1936"}, Mode: ModeRedirect, Logger: discardLogger()})
	addr := gw.Addr().String()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		rc := dialRaw(b, addr)
		if err := rc.connectAndPlay("live", "rtmp://"+addr+"/live", 1, "x", "play", "cam1"); err != nil {
			b.Fatal(err)
		}
		if _, d, err := rc.nextCommand(); err != nil || d[0] != "onStatus" {
			b.Fatal(d, err)
		}
		rc.conn.Close()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "redirects/s")
}

// benchOrigin serves one play per connection with gortmplib's ServerConn, then writes video
// messages of msgSize bytes: back to back ("flood"), or one per request on next ("latency",
// each carrying its send time).
type benchOrigin struct {
	ln      net.Listener
	msgSize int
	flood   []byte // pre-chunked messages, written in a loop
	next    chan struct{}
	wg      sync.WaitGroup
}

func startBenchOrigin(b *testing.B, msgSize int, latency bool) *benchOrigin {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	o := &benchOrigin{ln: ln, msgSize: msgSize}
	if latency {
		o.next = make(chan struct{})
	} else {
		var buf bytes.Buffer
		w := rawmessage.NewWriter(&buf, bytecounter.NewWriter(io.Discard), false)
		w.SetChunkSize(chunkSize)
		body := make([]byte, msgSize)
		body[0] = 0x17 // AVC key frame, NALU
		for i := range 16 {
			if err := w.Write(&rawmessage.Message{ChunkStreamID: 6, Type: 9, MessageStreamID: wireID(1),
				Timestamp: time.Duration(i) * 40 * time.Millisecond, Body: body}); err != nil {
				b.Fatal(err)
			}
		}
		o.flood = buf.Bytes()
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.wg.Add(1)
			go func() {
				defer o.wg.Done()
				defer c.Close()
				o.serve(c)
			}()
		}
	}()
	b.Cleanup(func() {
		if o.next != nil {
			close(o.next)
		}
		ln.Close()
		o.wg.Wait()
	})
	return o
}

func (o *benchOrigin) serve(c net.Conn) {
	sc := &gortmplib.ServerConn{RW: c}
	if sc.Initialize() != nil || sc.Accept() != nil {
		return
	}
	// Drain what the peer sends (acks) so it never blocks.
	go io.Copy(io.Discard, c) //nolint:errcheck
	if o.next == nil {
		for {
			if _, err := c.Write(o.flood); err != nil {
				return
			}
		}
	}
	w := rawmessage.NewWriter(c, bytecounter.NewWriter(io.Discard), false)
	w.SetChunkSize(chunkSize)
	body := make([]byte, o.msgSize)
	for i := 0; ; i++ {
		if _, ok := <-o.next; !ok {
			return
		}
		binary.BigEndian.PutUint64(body[8:], uint64(time.Now().UnixNano()))
		if err := w.Write(&rawmessage.Message{ChunkStreamID: 6, Type: 9, MessageStreamID: wireID(1),
			Timestamp: time.Duration(i) * time.Millisecond, Body: body}); err != nil {
			return
		}
	}
}

// copyProxy is the baseline: a TCP proxy that copies bytes both ways with io.Copy.
func copyProxy(b *testing.B, target string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(u, c); u.Close(); c.Close() }() //nolint:errcheck
			go func() { defer wg.Done(); io.Copy(c, u); u.Close(); c.Close() }() //nolint:errcheck
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// path starts one way to the origin: the io.Copy proxy ("copy") or the gateway's relay.
func path(b *testing.B, name, origin string) string {
	if name == "copy" {
		return copyProxy(b, origin)
	}
	gw := startGateway(b, &Server{Resolver: &fakeResolver{base: "rtmp://" + origin}, Mode: ModeRelay, Logger: discardLogger()})
	return gw.Addr().String()
}

// playPath starts an origin and one way to it ("copy": the io.Copy proxy, "relay": the
// gateway) and returns a player connected through it, past play.
func playPath(b *testing.B, name string, msgSize int, latency bool) (*benchOrigin, *rawClient) {
	o := startBenchOrigin(b, msgSize, latency)
	addr := path(b, name, o.ln.Addr().String())
	rc := dialRaw(b, addr)
	if err := rc.connectAndPlay("live", "rtmp://"+addr+"/live", -1, "x", "play", "cam1"); err != nil {
		b.Fatal(err)
	}
	_ = rc.conn.SetDeadline(time.Time{})
	return o, rc
}

// BenchmarkRelayThroughput: a player reads a flood of 64 KB video messages through the io.Copy
// proxy (the baseline) and through the relay, 8 MiB from each in turn every iteration, so both
// see the same machine load; it reports both rates and relay/copy.
func BenchmarkRelayThroughput(b *testing.B) {
	const chunk = 8 << 20
	_, viaCopy := playPath(b, "copy", 64000, false)
	_, viaRelay := playPath(b, "relay", 64000, false)
	buf := make([]byte, chunk)
	var tCopy, tRelay time.Duration
	b.SetBytes(2 * chunk)
	b.ResetTimer()
	for range b.N {
		for _, c := range []struct {
			rc *rawClient
			t  *time.Duration
		}{{viaCopy, &tCopy}, {viaRelay, &tRelay}} {
			t0 := time.Now()
			if _, err := io.ReadFull(c.rc.conn, buf); err != nil {
				b.Fatal(err)
			}
			*c.t += time.Since(t0)
		}
	}
	b.StopTimer()
	mb := float64(b.N) * chunk / 1e6
	b.ReportMetric(mb/tCopy.Seconds(), "copy-MB/s")
	b.ReportMetric(mb/tRelay.Seconds(), "relay-MB/s")
	b.ReportMetric(tCopy.Seconds()/tRelay.Seconds(), "relay/copy")
}

// BenchmarkRelayLatency: one 4 KB video message at a time, from the origin's write to the
// player's read, through the io.Copy proxy (the baseline) and through the relay in turn; it
// reports both and what the relay adds.
func BenchmarkRelayLatency(b *testing.B) {
	oCopy, viaCopy := playPath(b, "copy", 4096, true)
	oRelay, viaRelay := playPath(b, "relay", 4096, true)
	var tCopy, tRelay time.Duration
	b.ResetTimer()
	for range b.N {
		for _, c := range []struct {
			o  *benchOrigin
			rc *rawClient
			t  *time.Duration
		}{{oCopy, viaCopy, &tCopy}, {oRelay, viaRelay, &tRelay}} {
			c.o.next <- struct{}{}
			for {
				m, err := c.rc.next()
				if err != nil {
					b.Fatal(err)
				}
				if m.Type == 9 {
					*c.t += time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(m.Body[8:])))
					break
				}
			}
		}
	}
	b.StopTimer()
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(b.N) }
	b.ReportMetric(us(tCopy), "copy-µs/msg")
	b.ReportMetric(us(tRelay), "relay-µs/msg")
	b.ReportMetric(us(tRelay)-us(tCopy), "added-µs/msg")
}
