package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/redis/go-redis/v9"
)

// handshakeReads is how many reads of a new connection are looked at for an error reply.
const handshakeReads = 4

// serverWords keeps the first error reply a connection read during its handshake, so that a
// connection the server closes right after one (protected mode's DENIED, a refused HELLO or
// AUTH) fails with the server's words instead of a bare "broken pipe" or "EOF": go-redis
// takes an error reply to HELLO for "HELLO not supported" and goes on writing to a socket the
// server has closed.
type serverWords struct{}

func (serverWords) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &replyConn{Conn: c}, nil
	}
}

func (serverWords) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (serverWords) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// replyConn is used by one goroutine at a time (go-redis's pool hands it over), so its
// fields need no lock.
type replyConn struct {
	net.Conn
	reads int
	said  string // the first error reply seen in the handshake, without '-' and CRLF
}

func (c *replyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.reads < handshakeReads {
		c.reads++
		if c.said == "" && n > 1 && p[0] == '-' {
			line := p[1:n]
			if i := bytes.IndexByte(line, '\r'); i >= 0 {
				line = line[:i]
			}
			c.said = string(line[:min(len(line), 256)])
		}
	}
	return n, c.explain(err)
}

func (c *replyConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	return n, c.explain(err)
}

// explain puts the server's words into err. A *net.OpError stays one (go-redis looks for it
// to tell a broken connection), with the words in its Err.
func (c *replyConn) explain(err error) error {
	if err == nil || c.said == "" {
		return err
	}
	var op *net.OpError
	if errors.As(err, &op) {
		withWords := *op
		withWords.Err = fmt.Errorf("%w (the server said: %s)", op.Err, c.said)
		return &withWords
	}
	return fmt.Errorf("%w (the server said: %s)", err, c.said)
}
