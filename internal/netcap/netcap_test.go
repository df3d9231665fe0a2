package netcap

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rejected := make(chan string, 4)
	l := &Listener{Listener: ln, Max: 2, OnReject: func(c net.Conn, reason string) { rejected <- reason }}
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	a1, a2 := <-accepted, <-accepted
	over := dial()
	select {
	case r := <-rejected:
		if r != ReasonMaxConns {
			t.Fatalf("reason %q, want %q", r, ReasonMaxConns)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("third connection not rejected")
	}
	over.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err == nil {
		t.Fatal("rejected connection still open")
	}
	if l.Active() != 2 || l.Rejected() != 1 {
		t.Fatalf("active %d rejected %d", l.Active(), l.Rejected())
	}
	a1.Close()
	a1.Close() // counted once
	if l.Active() != 1 {
		t.Fatalf("active %d after one close", l.Active())
	}
	dial()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("a freed slot was not reused")
	}
	a2.Close()
}

// acceptAll serves l: accepted connections go to the returned channel until l is closed.
func acceptAll(t *testing.T, l *Listener) chan net.Conn {
	t.Helper()
	accepted := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() { l.Close() })
	return accepted
}

func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func closedByPeer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection from %s not closed by the listener: %v", c.LocalAddr(), err)
	}
}

// TestPerIP: one address gets MaxPerIP connections and no more, while another address is
// still served; a closed connection frees its address's slot.
func TestPerIP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reasons []string
	l := &Listener{Listener: ln, Max: 100, MaxPerIP: 2, OnReject: func(c net.Conn, reason string) {
		mu.Lock()
		reasons = append(reasons, reason)
		mu.Unlock()
	}}
	accepted := acceptAll(t, l)
	addr := ln.Addr().String()
	dialFrom(t, "127.0.0.2", addr)
	dialFrom(t, "127.0.0.2", addr)
	first := recv(t, accepted)
	recv(t, accepted)
	closedByPeer(t, dialFrom(t, "127.0.0.2", addr))
	dialFrom(t, "127.0.0.1", addr)
	recv(t, accepted)
	if got := l.ActiveFrom("127.0.0.2"); got != 2 {
		t.Fatalf("ActiveFrom(127.0.0.2) = %d, want 2", got)
	}
	mu.Lock()
	if len(reasons) != 1 || reasons[0] != ReasonMaxConnsPerIP {
		t.Fatalf("reasons %q, want one %q", reasons, ReasonMaxConnsPerIP)
	}
	mu.Unlock()
	first.Close()
	dialFrom(t, "127.0.0.2", addr)
	recv(t, accepted)
	if l.Active() != 3 || l.Rejected() != 1 {
		t.Fatalf("active %d rejected %d, want 3 and 1", l.Active(), l.Rejected())
	}
}

// TestFirstByteTimeout: a silent connection is closed after FirstByteTimeout even while its
// server waits on a longer read deadline; one that sent a byte is left alone.
func TestFirstByteTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rejected := make(chan string, 4)
	l := &Listener{Listener: ln, Max: 10, FirstByteTimeout: 200 * time.Millisecond, OnReject: func(c net.Conn, reason string) { rejected <- reason }}
	accepted := acceptAll(t, l)
	talker := dialFrom(t, "127.0.0.1", ln.Addr().String())
	if _, err := talker.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	tc := recv(t, accepted)
	if _, err := tc.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	silent := dialFrom(t, "127.0.0.1", ln.Addr().String())
	sc := recv(t, accepted)
	readErr := make(chan error, 1)
	go func() {
		_ = sc.SetReadDeadline(time.Now().Add(time.Minute))
		_, err := sc.Read(make([]byte, 1))
		readErr <- err
	}()
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("read on a silent connection returned data")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("silent connection not closed by FirstByteTimeout")
	}
	closedByPeer(t, silent)
	if r := recvString(t, rejected); r != ReasonFirstByte {
		t.Fatalf("reason %q, want %q", r, ReasonFirstByte)
	}
	time.Sleep(400 * time.Millisecond) // past the timeout: the talker stays open
	if _, err := talker.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err != nil {
		t.Fatalf("connection that had sent a byte was closed: %v", err)
	}
	if l.Active() != 1 {
		t.Fatalf("active %d, want 1", l.Active())
	}
}

// TestRejectLog: a burst of refusals writes one line with the count by reason, and every
// refusal is counted.
func TestRejectLog(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	counted := map[string]int{}
	r := &RejectLog{Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil)), Msg: "refused", Count: func(reason string) {
		counted[reason]++
	}}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	for i := 0; i < 500; i++ {
		r.Reject(a, ReasonMaxConnsPerIP)
	}
	r.Reject(a, ReasonMaxConns)
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if n := strings.Count(out, "\n"); n != 1 {
		t.Fatalf("%d lines for a burst, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "max_conns_per_ip=1 count=1") {
		t.Fatalf("first line does not count the first refusal: %s", out)
	}
	if counted[ReasonMaxConnsPerIP] != 500 || counted[ReasonMaxConns] != 1 {
		t.Fatalf("counted %v", counted)
	}
	r.last.Store(0) // as if a second had passed
	r.Reject(a, ReasonMaxConns)
	mu.Lock()
	out = buf.String()
	mu.Unlock()
	if !strings.Contains(out, "max_conns=2 max_conns_per_ip=499 count=501") {
		t.Fatalf("second line does not sum the refusals since the first:\n%s", out)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func recv(t *testing.T, ch chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

func recvString(t *testing.T, ch chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received")
		return ""
	}
}

// TestEvictSilent: at Max, a new connection takes the place of the oldest one that has sent
// nothing for EvictSilentAfter; a connection that has sent a byte is never evicted, and with
// no silent one old enough the new connection is refused.
func TestEvictSilent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rejected := make(chan string, 8)
	l := &Listener{Listener: ln, Max: 2, EvictSilentAfter: 200 * time.Millisecond, OnReject: func(c net.Conn, reason string) { rejected <- reason }}
	accepted := acceptAll(t, l)
	addr := ln.Addr().String()
	talker := dialFrom(t, "127.0.0.1", addr)
	if _, err := talker.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	tc := recv(t, accepted)
	if _, err := tc.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	silent := dialFrom(t, "127.0.0.2", addr)
	recv(t, accepted)
	// Too young to evict: the newcomer is refused.
	closedByPeer(t, dialFrom(t, "127.0.0.3", addr))
	if r := recvString(t, rejected); r != ReasonMaxConns {
		t.Fatalf("reason %q, want %q", r, ReasonMaxConns)
	}
	time.Sleep(400 * time.Millisecond)
	fresh := dialFrom(t, "127.0.0.3", addr)
	if r := recvString(t, rejected); r != ReasonEvicted {
		t.Fatalf("reason %q, want %q", r, ReasonEvicted)
	}
	fc := recv(t, accepted)
	closedByPeer(t, silent)
	if _, err := fresh.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	_ = fc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := fc.Read(make([]byte, 1)); err != nil {
		t.Fatalf("the newcomer was not served: %v", err)
	}
	// Both slots now hold talkers: the next one is refused, nobody evicted.
	time.Sleep(400 * time.Millisecond)
	closedByPeer(t, dialFrom(t, "127.0.0.4", addr))
	if r := recvString(t, rejected); r != ReasonMaxConns {
		t.Fatalf("reason %q, want %q", r, ReasonMaxConns)
	}
	if _, err := talker.Write([]byte("z")); err != nil {
		t.Fatal(err)
	}
	_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err != nil {
		t.Fatalf("a talking connection was evicted: %v", err)
	}
	if l.Active() != 2 {
		t.Fatalf("active %d, want 2", l.Active())
	}
}
