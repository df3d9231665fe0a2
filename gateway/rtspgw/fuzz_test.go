package rtspgw

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
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
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &Server{Resolver: fakeResolver{}, Logger: slog.New(slog.DiscardHandler), Metrics: nopMetrics{},
			ReadTimeout: 20 * time.Millisecond, WriteTimeout: time.Second, MaxRequestBytes: 4096, RetryAfter: time.Second}
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
