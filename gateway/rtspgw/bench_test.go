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

// httpRedirect does one GET on a new connection to the HTTP listener and checks the 302.
func httpRedirect(b *testing.B, addr string, buf []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /live/cam1/index.m3u8 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
	n, _ := io.ReadFull(c, buf[:12])
	if n < 12 || string(buf[9:12]) != "302" {
		b.Fatalf("%q", buf[:n])
	}
	for err == nil {
		_, err = c.Read(buf)
	}
}

// rtspRedirect does OPTIONS + DESCRIBE on a new connection to the RTSP listener and checks
// the 302.
func rtspRedirect(b *testing.B, addr, reqs string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, reqs)
	br := bufio.NewReader(c)
	var opt, desc base.Response
	if opt.Unmarshal(br) != nil || desc.Unmarshal(br) != nil || desc.StatusCode != base.StatusFound {
		b.Fatalf("%v %v", opt, desc)
	}
}

// redirectListeners starts the RTSP listener and, with the same resolver, the gateway's HTTP
// listener (gateway/httpgw).
func redirectListeners(b *testing.B) (rtspAddr, rtspReqs, httpAddr string, stop func()) {
	quiet := slog.New(slog.DiscardHandler)
	h := &httpgw.Server{Address: "127.0.0.1:0", Resolver: fakeResolver{}, Logger: quiet}
	if err := h.Initialize(); err != nil {
		b.Fatal(err)
	}
	r := &Server{Address: "127.0.0.1:0", Resolver: fakeResolver{}, Logger: quiet}
	if err := r.Initialize(); err != nil {
		b.Fatal(err)
	}
	rtspAddr = r.Addr().String()
	rtspReqs = req("OPTIONS", "rtsp://"+rtspAddr+"/live/cam1", 1) + req("DESCRIBE", "rtsp://"+rtspAddr+"/live/cam1", 2)
	return rtspAddr, rtspReqs, h.Addr().String(), func() { r.Close(); h.Close() }
}

// BenchmarkRedirect: a player's whole redirect on a new connection each time. rtsp is
// OPTIONS + DESCRIBE on the RTSP listener; http is one GET answered 302 by the gateway's
// HTTP listener with the same resolver, one connection per request; paired does one of each
// per iteration, so both see the same machine load, and reports their ratio.
func BenchmarkRedirect(b *testing.B) {
	buf := make([]byte, 4096)
	b.Run("http", func(b *testing.B) {
		_, _, addr, stop := redirectListeners(b)
		defer stop()
		b.ResetTimer()
		for range b.N {
			httpRedirect(b, addr, buf)
		}
		b.StopTimer()
		reqPerSec(b)
	})
	b.Run("rtsp", func(b *testing.B) {
		addr, reqs, _, stop := redirectListeners(b)
		defer stop()
		b.ResetTimer()
		for range b.N {
			rtspRedirect(b, addr, reqs)
		}
		b.StopTimer()
		reqPerSec(b)
	})
	b.Run("paired", func(b *testing.B) {
		raddr, reqs, haddr, stop := redirectListeners(b)
		defer stop()
		var dh, dr time.Duration
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			httpRedirect(b, haddr, buf)
			t1 := time.Now()
			rtspRedirect(b, raddr, reqs)
			dh, dr = dh+t1.Sub(t0), dr+time.Since(t1)
		}
		b.ReportMetric(float64(b.N)/dh.Seconds(), "http-req/s")
		b.ReportMetric(float64(b.N)/dr.Seconds(), "rtsp-req/s")
		b.ReportMetric(dh.Seconds()/dr.Seconds(), "rtsp/http")
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

// copyProxy is the baseline: a plain TCP proxy, io.Copy both ways. With splice, io.Copy
// between two TCP connections moves bytes inside the kernel (Linux splice); without, it reads
// and writes through a 32 KiB buffer, as any proxy that looks at the bytes must.
func copyProxy(b *testing.B, target string, splice bool) (string, func()) {
	cp := func(dst, src net.Conn) {
		if splice {
			io.Copy(dst, src)
			return
		}
		io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, make([]byte, 32<<10))
	}
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
			go func() { defer wg.Done(); cp(t, c); t.Close() }()
			go func() { defer wg.Done(); cp(c, t); c.Close() }()
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

// benchPath starts a publisher's session through "direct", "copy", "copybuf" or "relay" to a bench origin
// and returns the connection after the ANNOUNCE's 200.
func benchPath(b *testing.B, via string, echo bool) (net.Conn, *bufio.Reader, *atomic.Int64, func()) {
	originAddr, got, stopOrigin := benchOrigin(b, echo)
	stops := []func(){stopOrigin}
	addr := originAddr
	switch via {
	case "copy", "copybuf":
		a, stop := copyProxy(b, originAddr, via == "copy")
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

var vias = []string{"copy", "copybuf", "relay"}

// BenchmarkRelayThroughput pushes interleaved RTP-sized frames (1400 bytes, written 32 at a
// time as a muxer flushing a burst would) to a sink origin; copy is a plain TCP proxy in the
// same place (copybuf the same through a user-space buffer), relay the gateway's RTSP relay.
// MB/s is what reached the origin.
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

// BenchmarkRelayPaired measures the relay and its baselines in alternation, one operation
// each per iteration, so the machine's load drifts over all of them alike: throughput is a
// 2.9 MB burst of 1400-byte frames to a sink origin (timed until the last byte arrived),
// latency a 200-byte frame's round trip to an echoing origin. The ratios are relay against
// copy (io.Copy, kernel splice) and copybuf (io.Copy through a 32 KiB user-space buffer).
func BenchmarkRelayPaired(b *testing.B) {
	b.Run("throughput", func(b *testing.B) {
		chunk := []byte(strings.Repeat(frame(0, 1400), 32))
		const burst = 64
		type side struct {
			c    net.Conn
			got  *atomic.Int64
			sent int64
			d    time.Duration
		}
		sides := map[string]*side{}
		for _, via := range vias {
			c, _, got, stop := benchPath(b, via, false)
			defer stop()
			sides[via] = &side{c: c, got: got}
		}
		b.ResetTimer()
		for range b.N {
			for _, via := range vias {
				s := sides[via]
				t0 := time.Now()
				for range burst {
					if _, err := s.c.Write(chunk); err != nil {
						b.Fatal(err)
					}
				}
				s.sent += burst * int64(len(chunk))
				for end := t0.Add(60 * time.Second); s.got.Load() < s.sent; time.Sleep(10 * time.Microsecond) {
					if time.Now().After(end) {
						b.Fatal("burst did not arrive")
					}
				}
				s.d += time.Since(t0)
			}
		}
		mbps := func(s *side) float64 { return float64(s.sent) / s.d.Seconds() / 1e6 }
		for _, via := range vias {
			b.ReportMetric(mbps(sides[via]), via+"-MB/s")
		}
		b.ReportMetric(mbps(sides["relay"])/mbps(sides["copy"]), "relay/copy")
		b.ReportMetric(mbps(sides["relay"])/mbps(sides["copybuf"]), "relay/copybuf")
	})
	b.Run("latency", func(b *testing.B) {
		msg := []byte(frame(0, 200))
		buf := make([]byte, len(msg))
		type side struct {
			c  net.Conn
			br *bufio.Reader
			d  time.Duration
		}
		sides := map[string]*side{}
		for _, via := range vias {
			c, br, _, stop := benchPath(b, via, true)
			defer stop()
			sides[via] = &side{c: c, br: br}
		}
		b.ResetTimer()
		for range b.N {
			for _, via := range vias {
				s := sides[via]
				t0 := time.Now()
				if _, err := s.c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(s.br, buf); err != nil {
					b.Fatal(err)
				}
				s.d += time.Since(t0)
			}
		}
		per := func(via string) float64 { return float64(sides[via].d.Nanoseconds()) / float64(b.N) }
		for _, via := range vias {
			b.ReportMetric(per(via), via+"-ns/rtt")
		}
		b.ReportMetric((per("relay")-per("copy"))/2, "added-ns/pass")
	})
}
