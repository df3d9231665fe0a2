package httpsrv

import (
	"testing"
	"time"

	"github.com/peergate/peergate/origin/media"
)

// neverStarts claims every name is on demand but never publishes it.
type neverStarts struct{}

func (neverStarts) Demand(*media.Table, string) bool { return true }

// TestOnDemandTimeoutAnswered: when an on-demand start does not come up within the start
// bound, the waiting request still gets its 404, even if the bound exceeds WriteTimeout
// (the defaults are equal: 10 s each).
func TestOnDemandTimeoutAnswered(t *testing.T) {
	e := newEnv(t, media.Config{Starter: neverStarts{}, StartTimeout: 1500 * time.Millisecond})
	s := e.startHTTP(func(s *Server) { s.WriteTimeout = time.Second })
	for _, p := range []string{"/live/never/index.m3u8", "/live/never/mpegts", "/live/never/embed.html"} {
		if code, _, _ := get(t, baseURL(s)+p, nil); code != 404 {
			t.Errorf("%s: status %d, want 404", p, code)
		}
	}
}
