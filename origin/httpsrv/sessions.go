package httpsrv

import (
	"context"
	"sync"
	"time"

	"github.com/peergate/peergate/origin/media"
)

// sessions counts HLS viewers. HLS has no connection per viewer, so a viewer is a distinct
// (stream, client address, User-Agent) seen within the session timeout; it joins the stream
// on its first request and leaves after the timeout without requests. Players behind one NAT
// with the same User-Agent count once: an undercount we accept over per-request guessing.
type sessions struct {
	timeout time.Duration
	max     int

	mu sync.Mutex
	m  map[sessionKey]*session
}

type sessionKey struct {
	name, ip, ua string
}

type session struct {
	st       *media.Stream
	v        *media.Viewer
	last     time.Time // end of the latest request
	inflight int       // requests being answered (a first playlist may wait for seconds)
}

func newSessions(timeout time.Duration, max int) *sessions {
	return &sessions{timeout: timeout, max: max, m: map[sessionKey]*session{}}
}

// begin records the start of a request of a viewer and returns its Viewer (nil when over
// the session cap: the bytes are then counted without a viewer) and the func that ends the
// request; a nil func means the stream has limits.max_viewers viewers already: refuse.
func (ss *sessions) begin(st *media.Stream, ip, ua string) (*media.Viewer, func()) {
	if len(ua) > 256 {
		ua = ua[:256]
	}
	k := sessionKey{st.Name(), ip, ua}
	now := time.Now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s := ss.m[k]; s != nil {
		if s.st == st {
			s.inflight++
			return s.v, ss.end(s)
		}
		// The stream restarted under the same NAME: move the viewer to the new one.
		s.v.Leave()
		delete(ss.m, k)
	}
	if len(ss.m) >= ss.max {
		return nil, func() {}
	}
	v, err := st.TryJoin(media.ProtoHLS)
	if err != nil {
		return nil, nil
	}
	s := &session{st: st, v: v, last: now, inflight: 1}
	ss.m[k] = s
	return s.v, ss.end(s)
}

// active reports whether the viewer (name, ip, ua) has a session: it made an HLS request
// within the session timeout, or has one in flight.
func (ss *sessions) active(name, ip, ua string) bool {
	if len(ua) > 256 {
		ua = ua[:256]
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	_, ok := ss.m[sessionKey{name, ip, ua}]
	return ok
}

func (ss *sessions) end(s *session) func() {
	return func() {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		s.inflight--
		s.last = time.Now()
	}
}

// run expires idle sessions until ctx ends.
func (ss *sessions) run(ctx context.Context) {
	every := min(ss.timeout/4, time.Second)
	t := time.NewTicker(max(every, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			ss.expire(now)
		}
	}
}

func (ss *sessions) expire(now time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, s := range ss.m {
		ended := false
		select {
		case <-s.st.Done():
			ended = true
		default:
		}
		if ended || (s.inflight == 0 && now.Sub(s.last) > ss.timeout) {
			s.v.Leave()
			delete(ss.m, k)
		}
	}
}

func (ss *sessions) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

func (ss *sessions) closeAll() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, s := range ss.m {
		s.v.Leave()
		delete(ss.m, k)
	}
}
