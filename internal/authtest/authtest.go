// Package authtest holds what the publish and play authorization tests of every listener
// share: the table of play tokens that must be refused, and a real HTTP authorization hook.
package authtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/shared/pubauth"
)

// PlaySecret is the play secret the listener tests configure.
const PlaySecret = "play-secret-0123456789ab"

// Case is one play query a listener must refuse (Query is "" or "token=...", without '?').
type Case struct{ Desc, Query string }

// BadTokens are the play queries for NAME that must be refused under PlaySecret: none, a
// forged MAC, expired, for another NAME, under another secret and, with bound, bound to
// another client address than the test's 127.0.0.1.
func BadTokens(name string, bound bool) []Case {
	future := time.Now().Add(time.Hour).Unix()
	cases := []Case{
		{"missing", ""},
		{"wrong", "token=" + strconv.FormatInt(future, 10) + ".AAAAAAAAAAAAAAAAAAAAAA"},
		{"expired", pubauth.TokenQuery(PlaySecret, name, time.Now().Add(-time.Minute).Unix(), "")},
		{"other name", pubauth.TokenQuery(PlaySecret, name+"x", future, "")},
		{"other secret", pubauth.TokenQuery("another-secret-0123456", name, future, "")},
	}
	if bound {
		cases = append(cases, Case{"other client", pubauth.TokenQuery(PlaySecret, name, future, "192.0.2.7")})
	}
	return cases
}

// GoodToken is a play query for NAME valid for an hour, bound to client when not "".
func GoodToken(name, client string) string {
	return pubauth.TokenQuery(PlaySecret, name, time.Now().Add(time.Hour).Unix(), client)
}

// Hook is a real HTTP authorization hook: NAMEs starting "live/ok" are allowed, "live/slow"
// is answered only after its caller gave up, anything else is denied. It records what it
// was asked.
type Hook struct {
	*httptest.Server
	mu   sync.Mutex
	seen []pubauth.HookRequest
	stop chan struct{}
}

// NewHook starts a Hook, closed when t ends.
func NewHook(t testing.TB) *Hook {
	h := &Hook{stop: make(chan struct{})}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req pubauth.HookRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.seen = append(h.seen, req)
		h.mu.Unlock()
		switch {
		case strings.HasPrefix(req.Name, "live/ok"):
			w.WriteHeader(http.StatusOK)
		case req.Name == "live/slow":
			select {
			case <-r.Context().Done():
			case <-h.stop:
			}
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	t.Cleanup(func() { close(h.stop); h.Close() })
	return h
}

// Asked returns the requests the hook got about NAME.
func (h *Hook) Asked(name string) []pubauth.HookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []pubauth.HookRequest
	for _, r := range h.seen {
		if r.Name == name {
			out = append(out, r)
		}
	}
	return out
}
