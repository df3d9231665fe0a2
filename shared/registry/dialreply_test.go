package registry

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestDialShowsServerWords: a server that answers a new connection with an error reply and
// closes it (redis-server's protected mode says DENIED so) fails the first command with the
// server's words, not a bare broken pipe or EOF; a healthy Redis is unaffected (every other
// test of the package dials through the same hook).
func TestDialShowsServerWords(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const denied = "DENIED Redis is running in protected mode because protected mode is enabled"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("-" + denied + "\r\n"))
			c.Close()
		}
	}()
	for _, u := range []string{"redis://" + ln.Addr().String() + "/0", "redis+cluster://" + ln.Addr().String()} {
		c, err := Dial(u)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = c.Ping(ctx).Err()
		cancel()
		c.Close()
		if err == nil || !strings.Contains(err.Error(), "DENIED") {
			t.Errorf("%s: PING error %v, want the server's DENIED", u, err)
		}
	}
}
