// Package rtspsrv serves RTSP on the origin: ANNOUNCE/RECORD publish into the media table, DESCRIBE/SETUP/PLAY read from it over TCP and UDP.
package rtspsrv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"

	"github.com/peergate/peergate/internal/netcap"
	"github.com/peergate/peergate/origin/media"
)

// Server is the origin's RTSP listener. Set the fields, then Start; Close stops everything.
type Server struct {
	// Address is the TCP listen address, e.g. ":8555" or "127.0.0.1:0".
	Address string
	// UDPRTPAddress enables the UDP transport: "host:port" with an even port (RTCP uses port+1),
	// or "host:0" to pick a free pair. Empty means TCP only.
	UDPRTPAddress string
	// Table is the stream table. Required.
	Table *media.Table
	// ReadTimeout bounds reads of a recording publisher. It defaults to 10 seconds.
	ReadTimeout time.Duration
	// WriteTimeout bounds writes. It defaults to 10 seconds.
	WriteTimeout time.Duration
	// IdleTimeout bounds the time to receive one whole request and a session's silence.
	// It defaults to 30 seconds.
	IdleTimeout time.Duration
	// MaxConns caps concurrent TCP connections; extra ones are closed at once. It defaults to 1024.
	MaxConns int
	// MaxConnsPerIP caps concurrent connections from one client address; extra ones are
	// closed at once. It defaults to 256. Relayed sessions all come from their gateway's
	// address: size it for the relays one gateway carries to this origin.
	MaxConnsPerIP int
	// FirstByteTimeout closes a connection that sends nothing this long after accept,
	// whatever the protocol's own deadlines. It defaults to 5 seconds.
	FirstByteTimeout time.Duration
	// MaxRequestBytes caps one request (headers and body); a connection that sends more
	// is cut off. It defaults to 64 KiB.
	MaxRequestBytes int
	// WriteQueueSize is the per-reader queue of outgoing packets (a power of two); a reader
	// that lets it overflow is disconnected. It defaults to 1024.
	WriteQueueSize int
	// SenderReportPeriod is how often each RTP feed sends an RTCP sender report (the NTP of
	// the stream's source clock for an RTP timestamp, media.Unit.NTP): a player, or a relay
	// origin pulling the stream, learns the source's wall clock from the first one, so it
	// comes about this long after PLAY at most. It defaults to 1 second (gortsplib's own
	// reports, every 10 seconds, are turned off).
	SenderReportPeriod time.Duration
	// OutputIdle closes the RTP feed of a stream that had no RTSP reader for this long.
	// It defaults to 10 seconds.
	OutputIdle time.Duration
	// Authorize, if set, decides whether a publisher may publish NAME: it gets the NAME and
	// the query the publisher sent (the ANNOUNCE URL's query),
	// and a non-nil error refuses the publish (403, or 409 for an error wrapping
	// media.ErrAlreadyPublishing). Nil lets anyone publish (the default).
	Authorize func(name, query, client string) error
	// AuthorizePlay, if set, decides whether a player may play NAME: it gets the NAME, the
	// DESCRIBE URL's query and the client's address, and a non-nil error answers 403. A
	// player that skips DESCRIBE is checked on its first SETUP instead. Nil lets anyone play
	// (the default).
	AuthorizePlay func(name, query, client string) error
	// Logger gets one line per connection outcome. It defaults to slog.Default().
	Logger *slog.Logger

	srv     *gortsplib.Server
	ln      *netcap.Listener
	rejects netcap.RejectLog
	h       *handler
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	rtp     int
	rtcp    int
}

// Start listens and serves.
func (s *Server) Initialize() error {
	if s.Table == nil {
		return errors.New("rtspsrv: Table is required")
	}
	if s.ReadTimeout <= 0 {
		s.ReadTimeout = 10 * time.Second
	}
	if s.WriteTimeout <= 0 {
		s.WriteTimeout = 10 * time.Second
	}
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = 30 * time.Second
	}
	if s.MaxConns <= 0 {
		s.MaxConns = 1024
	}
	if s.MaxConnsPerIP <= 0 {
		s.MaxConnsPerIP = netcap.DefaultMaxPerIP
	}
	if s.FirstByteTimeout <= 0 {
		s.FirstByteTimeout = 5 * time.Second
	}
	if s.MaxRequestBytes <= 0 {
		s.MaxRequestBytes = 64 << 10
	}
	if s.WriteQueueSize <= 0 {
		s.WriteQueueSize = 1024
	}
	if s.SenderReportPeriod <= 0 {
		s.SenderReportPeriod = time.Second
	}
	if s.OutputIdle <= 0 {
		s.OutputIdle = 10 * time.Second
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	s.rejects = netcap.RejectLog{Logger: s.Logger, Msg: "rtsp connections refused"}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.h = newHandler(s)
	s.srv = &gortsplib.Server{
		Handler:        s.h,
		RTSPAddress:    s.Address,
		ReadTimeout:    s.ReadTimeout,
		WriteTimeout:   s.WriteTimeout,
		IdleTimeout:    s.IdleTimeout,
		WriteQueueSize: s.WriteQueueSize,
		// Each feed sends its own sender reports, from the source clock, every
		// SenderReportPeriod (sr.go); gortsplib's period (10 s) is not settable.
		DisableRTCPSenderReports: true,
		Listen: func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			reqMax := int64(s.MaxRequestBytes)
			s.ln = &netcap.Listener{
				Listener:         ln,
				Max:              int64(s.MaxConns),
				MaxPerIP:         int64(s.MaxConnsPerIP),
				FirstByteTimeout: s.FirstByteTimeout,
				EvictSilentAfter: netcap.DefaultEvictSilentAfter,
				OnReject:         s.rejects.Reject,
				Wrap:             func(c net.Conn) net.Conn { return &limitConn{Conn: c, reqMax: reqMax} },
			}
			return s.ln, nil
		},
	}
	if s.UDPRTPAddress != "" {
		rtpConn, rtcpConn, err := listenUDPPair(s.UDPRTPAddress)
		if err != nil {
			s.cancel()
			return err
		}
		s.rtp = rtpConn.LocalAddr().(*net.UDPAddr).Port
		s.rtcp = rtcpConn.LocalAddr().(*net.UDPAddr).Port
		host, _, _ := net.SplitHostPort(s.UDPRTPAddress)
		s.srv.UDPRTPAddress = net.JoinHostPort(host, strconv.Itoa(s.rtp))
		s.srv.UDPRTCPAddress = net.JoinHostPort(host, strconv.Itoa(s.rtcp))
		// Hand gortsplib the sockets already bound, so a picked pair cannot be lost to a race.
		pre := map[string]net.PacketConn{s.srv.UDPRTPAddress: rtpConn, s.srv.UDPRTCPAddress: rtcpConn}
		var mu sync.Mutex
		s.srv.ListenPacket = func(network, address string) (net.PacketConn, error) {
			mu.Lock()
			defer mu.Unlock()
			if c, ok := pre[address]; ok {
				delete(pre, address)
				return c, nil
			}
			return net.ListenPacket(network, address)
		}
	}
	if err := s.srv.Start(); err != nil {
		s.cancel()
		return fmt.Errorf("rtspsrv: %w", err)
	}
	s.wg.Add(1)
	go s.h.janitor()
	return nil
}

// Addr is the bound TCP address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.srv.NetListener().Addr() }

// UDPPorts are the bound RTP and RTCP ports, zeros when UDP is off.
func (s *Server) UDPPorts() (rtp, rtcp int) { return s.rtp, s.rtcp }

// Close stops the listener, ends every session and RTP feed, and waits for them.
func (s *Server) Close() {
	s.cancel()
	s.h.closeOutputs()
	s.srv.Close()
	s.wg.Wait()
}

// listenUDPPair binds an even RTP port and the next odd RTCP port (port 0: any free pair).
func listenUDPPair(addr string) (net.PacketConn, net.PacketConn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("rtspsrv: UDPRTPAddress: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65534 || port%2 != 0 {
		return nil, nil, fmt.Errorf("rtspsrv: UDPRTPAddress %q: port must be even (or 0)", addr)
	}
	for try := 0; try < 100; try++ {
		p := port
		var rtp net.PacketConn
		if p == 0 {
			rtp, err = net.ListenPacket("udp", net.JoinHostPort(host, "0"))
			if err != nil {
				return nil, nil, err
			}
			p = rtp.LocalAddr().(*net.UDPAddr).Port
			if p%2 != 0 || p == 65535 {
				rtp.Close()
				continue
			}
		} else {
			rtp, err = net.ListenPacket("udp", addr)
			if err != nil {
				return nil, nil, err
			}
		}
		rtcp, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(p+1)))
		if err != nil {
			rtp.Close()
			if port != 0 {
				return nil, nil, err
			}
			continue
		}
		return rtp, rtcp, nil
	}
	return nil, nil, errors.New("rtspsrv: no free UDP port pair")
}

// errRequestTooLarge cuts a connection whose request exceeds MaxRequestBytes.
var errRequestTooLarge = errors.New("rtsp request too large")

// limitConn bounds the bytes read between two complete requests until the session streams
// interleaved media, where gortsplib's own frame limits apply.
type limitConn struct {
	net.Conn
	reqMax    int64
	n         atomic.Int64
	streaming atomic.Bool
	started   bool // first byte seen; only the reading goroutine touches it
}

// errNotRTSP cuts a connection whose first byte cannot start an RTSP or HTTP-tunnel request;
// gortsplib would otherwise skip junk byte by byte until the idle timeout.
var errNotRTSP = errors.New("not an RTSP request")

func (c *limitConn) Read(p []byte) (int, error) {
	if !c.streaming.Load() {
		rem := c.reqMax - c.n.Load()
		if rem <= 0 {
			return 0, errRequestTooLarge
		}
		if int64(len(p)) > rem {
			p = p[:rem]
		}
	}
	n, err := c.Conn.Read(p)
	if n > 0 && !c.started {
		c.started = true
		if p[0] < 'A' || p[0] > 'Z' {
			return 0, errNotRTSP
		}
	}
	c.n.Add(int64(n))
	return n, err
}

// requestDone restarts the per-request budget.
func (c *limitConn) requestDone() { c.n.Store(0) }
