package rtspgw

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/peergate/peergate/gateway/gwmetrics"
)

// TestCaps: a client address over MaxConnsPerIP is closed at once and counted
// refused_per_ip while another address is served; a connection that sends nothing is closed
// after FirstRequestTimeout, not ReadTimeout; at MaxConns a connection silent for a second
// makes room for a new client (counted evicted_silent).
func TestCaps(t *testing.T) {
	m := &outcomeCounter{}
	s := startServer(t, func(s *Server) {
		s.MaxConns = 3
		s.MaxConnsPerIP = 2
		s.FirstRequestTimeout = 6 * time.Second
		s.ReadTimeout = time.Minute
		s.Metrics = m
	})
	addr := s.Addr().String()
	from := func(ip string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Time for the server to read EOF or a reset on a closed connection.
	closedAfter := func(c net.Conn, d time.Duration) (time.Duration, bool) {
		start := time.Now()
		_ = c.SetReadDeadline(start.Add(d))
		n, err := c.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return time.Since(start), false
		}
		return time.Since(start), n == 0 && err != nil
	}
	a1, a2 := from("127.0.0.2"), from("127.0.0.2")
	waitUntil(t, "two connections from 127.0.0.2 accepted", func() bool { return s.ln.ActiveFrom("127.0.0.2") == 2 })
	if d, ok := closedAfter(from("127.0.0.2"), 2*time.Second); !ok || d > time.Second {
		t.Fatalf("third connection from one address not closed at once (%v, closed %v)", d, ok)
	}
	if n := m.count(gwmetrics.RefusedPerIP); n != 1 {
		t.Fatalf("refused_per_ip counted %d times, want 1", n)
	}
	// Another address still gets the last slot and is answered.
	b := from("127.0.0.3")
	_ = b.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(b, req("OPTIONS", "rtsp://"+addr+"/x", 1))
	var res base.Response
	if err := res.Unmarshal(bufio.NewReader(b)); err != nil || res.StatusCode != base.StatusOK {
		t.Fatalf("other address: %v %v", res.StatusCode, err)
	}
	// The full listener (a1, a2 silent for over a second, b talking) makes room for a newcomer
	// by closing the oldest silent one.
	time.Sleep(1500 * time.Millisecond)
	res2, _ := exchange(t, addr, req("OPTIONS", "rtsp://"+addr+"/x", 1))
	if res2[0].StatusCode != base.StatusOK {
		t.Fatalf("newcomer at the cap: %v", res2[0])
	}
	if n := m.count(gwmetrics.EvictedSilent); n != 1 {
		t.Fatalf("evicted_silent counted %d times, want 1", n)
	}
	if _, ok := closedAfter(a1, 2*time.Second); !ok {
		t.Fatal("the oldest silent connection was not the one evicted")
	}
	// a2 sends nothing: it is cut FirstRequestTimeout after accept, long before ReadTimeout.
	if d, ok := closedAfter(a2, 10*time.Second); !ok {
		t.Fatalf("silent connection still open after %v", d)
	}
	if n := m.count(gwmetrics.Refused); n != 0 {
		t.Fatalf("refused over max_conns %d times, want 0", n)
	}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outcomeCounter is a Metrics that counts Redirect outcomes.
type outcomeCounter struct {
	gwmetrics.Nop
	mu sync.Mutex
	n  map[string]int
}

func (m *outcomeCounter) Redirect(_, outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = map[string]int{}
	}
	m.n[outcome]++
}

func (m *outcomeCounter) count(outcome string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[outcome]
}
