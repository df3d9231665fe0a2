package netcap

import (
	"net"
	"testing"
	"time"
)

// TestGroup: served connections and tracked extra ones are closed by Close, which returns only
// when every serve has; nothing is tracked once Close began.
func TestGroup(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var g Group
	served := make(chan struct{}, 1)
	ended := make(chan struct{})
	g.Serve(ln, func(c net.Conn) {
		served <- struct{}{}
		_, _ = c.Read(make([]byte, 1)) // until Close closes it
		close(ended)
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("connection not served")
	}
	a, b := net.Pipe()
	defer b.Close()
	if !g.Track(a) {
		t.Fatal("Track refused before Close")
	}
	g.Close()
	select {
	case <-ended:
	default:
		t.Fatal("Close returned before serve did")
	}
	if _, err := a.Write([]byte{1}); err == nil {
		t.Fatal("tracked connection still open after Close")
	}
	x, y := net.Pipe()
	defer x.Close()
	defer y.Close()
	if g.Track(x) {
		t.Fatal("Track accepted a connection after Close")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatal("listener still accepting after Close")
	}
	g.Close() // twice is fine
}
