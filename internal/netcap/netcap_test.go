package netcap

import (
	"net"
	"testing"
	"time"
)

func TestCap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rejected := make(chan string, 4)
	l := &Listener{Listener: ln, Max: 2, OnReject: func(c net.Conn) { rejected <- c.RemoteAddr().String() }}
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
	case <-rejected:
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
