package rtspgw

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/peergate/peergate/gateway/httpgw"
)

// Run with a fixed count, e.g.
//
//	go test -run '^$' -bench . -benchtime 2000x ./gateway/rtspgw/
//
// and compare each line with its baseline from the same run: rtsp against http for
// redirects, relay against copy for the relay.

func reqPerSec(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkRedirect: a player's whole redirect on a new connection each time. rtsp is
// OPTIONS + DESCRIBE on the RTSP listener; http is one GET answered 302 by the gateway's
// HTTP listener (gateway/httpgw) with the same resolver, one connection per request.
func BenchmarkRedirect(b *testing.B) {
	quiet := slog.New(slog.DiscardHandler)
	b.Run("http", func(b *testing.B) {
		s := &httpgw.Server{Address: "127.0.0.1:0", Resolver: fakeResolver{}, Logger: quiet}
		if err := s.Initialize(); err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		addr := s.Addr().String()
		const get = "GET /live/cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
		buf := make([]byte, 4096)
		b.ResetTimer()
		for range b.N {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			io.WriteString(c, get)
			n, _ := io.ReadFull(c, buf[:12])
			if n < 12 || string(buf[9:12]) != "302" {
				b.Fatalf("%q", buf[:n])
			}
			for err == nil {
				_, err = c.Read(buf)
			}
			c.Close()
		}
		b.StopTimer()
		reqPerSec(b)
	})
	b.Run("rtsp", func(b *testing.B) {
		s := &Server{Address: "127.0.0.1:0", Resolver: fakeResolver{}, Logger: quiet}
		if err := s.Initialize(); err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		addr := s.Addr().String()
		reqs := req("OPTIONS", "rtsp://"+addr+"/live/cam1", 1) + req("DESCRIBE", "rtsp://"+addr+"/live/cam1", 2)
		b.ResetTimer()
		for range b.N {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			io.WriteString(c, reqs)
			br := bufio.NewReader(c)
			var opt, desc base.Response
			if opt.Unmarshal(br) != nil || desc.Unmarshal(br) != nil || desc.StatusCode != base.StatusFound {
				b.Fatalf("%v %v", opt, desc)
			}
			c.Close()
		}
		b.StopTimer()
		reqPerSec(b)
	})
}

// benchOrigin is a bare origin: it answers the first request 200, then counts and drops what
// comes (sink) or sends it back (echo).
func benchOrigin(b *testing.B, echo bool) (string, *atomic.Int64, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReaderSize(c, 64<<10)
				var r base.Request
				if r.Unmarshal(br) != nil {
					return
				}
				io.WriteString(c, "RTSP/1.0 200 OK\r\nCSeq: "+r.Header["CSeq"][0]+"\r\n\r\n")
				if echo {
					io.Copy(c, br)
					return
				}
				io.Copy(counter{&got}, br)
			}()
		}
	}()
	return ln.Addr().String(), &got, func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

type counter struct{ n *atomic.Int64 }

func (c counter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

// copyProxy is the baseline: a plain TCP proxy, io.Copy both ways.
func copyProxy(b *testing.B, target string) (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, t)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(t, c); t.Close() }()
			go func() { defer wg.Done(); io.Copy(c, t); c.Close() }()
		}
	}()
	return ln.Addr().String(), func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// path starts a publisher's session through "direct", "copy" or "relay" to a bench origin
// and returns the connection after the ANNOUNCE's 200.
func benchPath(b *testing.B, via string, echo bool) (net.Conn, *bufio.Reader, *atomic.Int64, func()) {
	originAddr, got, stopOrigin := benchOrigin(b, echo)
	stops := []func(){stopOrigin}
	addr := originAddr
	switch via {
	case "copy":
		a, stop := copyProxy(b, originAddr)
		addr, stops = a, append(stops, stop)
	case "relay":
		s := &Server{Address: "127.0.0.1:0", Resolver: fakeResolver{origin: "rtsp://" + originAddr}, Logger: slog.New(slog.DiscardHandler)}
		if err := s.Initialize(); err != nil {
			b.Fatal(err)
		}
		addr, stops = s.Addr().String(), append(stops, s.Close)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	io.WriteString(c, "ANNOUNCE rtsp://"+addr+"/live/bench RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: "+
		itoa(len(sdp))+"\r\n\r\n"+sdp)
	br := bufio.NewReaderSize(c, 64<<10)
	var res base.Response
	if err := res.Unmarshal(br); err != nil || res.StatusCode != base.StatusOK {
		b.Fatalf("%v %v", res, err)
	}
	return c, br, got, func() {
		c.Close()
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		if n /= 10; n == 0 {
			return string(b[i:])
		}
	}
}

var vias = []string{"copy", "relay"}

// BenchmarkRelayThroughput pushes interleaved RTP-sized frames (1400 bytes, written 32 at a
// time as a muxer flushing a burst would) to a sink origin; copy is a plain TCP proxy in the
// same place, relay the gateway's RTSP relay. MB/s is what reached the origin.
func BenchmarkRelayThroughput(b *testing.B) {
	chunk := []byte(strings.Repeat(frame(0, 1400), 32))
	for _, via := range vias {
		b.Run(via, func(b *testing.B) {
			c, _, got, stop := benchPath(b, via, false)
			defer stop()
			b.SetBytes(int64(len(chunk)))
			want := int64(b.N) * int64(len(chunk))
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			for end := time.Now().Add(60 * time.Second); got.Load() < want; time.Sleep(50 * time.Microsecond) {
				if time.Now().After(end) {
					b.Fatalf("%d of %d bytes arrived", got.Load(), want)
				}
			}
		})
	}
}

// BenchmarkRelayLatency is one small frame to an echoing origin and back: ns/op is the round
// trip, through each proxy twice (direct is no proxy at all).
func BenchmarkRelayLatency(b *testing.B) {
	msg := []byte(frame(0, 200))
	buf := make([]byte, len(msg))
	for _, via := range append([]string{"direct"}, vias...) {
		b.Run(via, func(b *testing.B) {
			c, br, _, stop := benchPath(b, via, true)
			defer stop()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(br, buf); err != nil || !bytes.Equal(buf, msg) {
					b.Fatal(err)
				}
			}
		})
	}
}
