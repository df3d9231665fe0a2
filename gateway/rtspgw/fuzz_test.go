package rtspgw

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/peergate/peergate/gateway/gwmetrics"
)

// FuzzServe feeds raw bytes to one connection: whatever comes in, the server answers only
// RTSP responses and never a Location outside the registry.
func FuzzServe(f *testing.F) {
	for _, seed := range []string{
		req("OPTIONS", "rtsp://gw/live/cam1", 1) + req("DESCRIBE", "rtsp://gw/live/cam1?t=1", 2),
		req("DESCRIBE", "rtsp://gw//evil.com/x", 1),
		req("DESCRIBE", "rtsp://gw/%5Cevil.com", 1),
		req("SETUP", "rtsp://gw/live/cam1/trackID=0", 3),
		"DESCRIBE rtsp://gw/live/cam1 RTSP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"\x00\x01garbage",
		"ANNOUNCE rtsp://gw/busy RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 3\r\n\r\nv=0",
		req("ANNOUNCE", "rtsp://gw/dead", 1),
		req("ANNOUNCE", "rtsp://gw/hostile", 1),
		frame(0, 4) + req("OPTIONS", "*", 1),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &Server{Resolver: fakeResolver{}, Logger: slog.New(slog.DiscardHandler), Metrics: gwmetrics.Nop{},
			ReadTimeout: 20 * time.Millisecond, WriteTimeout: time.Second, MaxRequestBytes: 4096, RetryAfter: time.Second}
		s.setDefaults()
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() { s.serve(server); server.Close(); close(done) }()
		go func() { client.Write(in); client.Write([]byte("\r\n\r\n")) }()
		client.SetReadDeadline(time.Now().Add(2 * time.Second))
		br := bufio.NewReader(client)
		for {
			var res base.Response
			if err := res.Unmarshal(br); err != nil {
				break
			}
			for _, loc := range res.Header["Location"] {
				if !strings.HasPrefix(loc, registered) {
					t.Fatalf("Location %q outside the registry for input %q", loc, in)
				}
			}
		}
		client.Close()
		io.Copy(io.Discard, br)
		<-done
	})
}

// FuzzFramer feeds raw bytes to the relay's reader, with a relay's buffer and a pre-relay
// one: it hands out only whole frames and messages within the cap, in input order, and
// never more bytes than came in.
func FuzzFramer(f *testing.F) {
	for _, c := range framerCases {
		f.Add([]byte(c.in), false)
	}
	f.Add([]byte(opts+frame(0, 3)), true)
	f.Fuzz(func(t *testing.T, in []byte, small bool) {
		size := relayBufSize
		if small {
			size = preRelayBuf
		}
		const max = 1024
		fr := &framer{br: bufio.NewReaderSize(bytes.NewReader(in), size), max: max}
		var out []byte
		for {
			k, b, err := fr.next()
			if err != nil {
				break
			}
			switch k {
			case unitFrames:
				if len(b) == 0 || wholeFrames(b) != len(b) {
					t.Fatalf("frames %q are not whole", b)
				}
			case unitMessage:
				if len(b) == 0 || len(b) > max {
					t.Fatalf("message of %d bytes", len(b))
				}
				var req base.Request
				_ = parseWhole(b, &req)
			default:
				t.Fatalf("unit %d", k)
			}
			out = append(out, b...)
		}
		// What came out is the input with blank lines before messages dropped.
		if len(out) > len(in) || !isSubsequence(out, in) {
			t.Fatalf("output %q is not taken from input %q", out, in)
		}
	})
}

// isSubsequence reports whether a's bytes appear in b in order.
func isSubsequence(a, b []byte) bool {
	i := 0
	for j := 0; i < len(a) && j < len(b); j++ {
		if a[i] == b[j] {
			i++
		}
	}
	return i == len(a)
}
