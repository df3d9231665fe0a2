package pubauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hookServer is a real HTTP hook: it records the requests and answers with status(req).
type hookServer struct {
	*httptest.Server
	calls atomic.Int64
	mu    sync.Mutex
	last  HookRequest
}

func newHookServer(t *testing.T, status func(HookRequest) int) *hookServer {
	hs := &hookServer{}
	hs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req HookRequest
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		hs.calls.Add(1)
		hs.mu.Lock()
		hs.last = req
		hs.mu.Unlock()
		w.WriteHeader(status(req))
	}))
	t.Cleanup(hs.Close)
	return hs
}

func TestHook(t *testing.T) {
	hs := newHookServer(t, func(r HookRequest) int {
		switch r.Name {
		case "live/ok":
			return http.StatusNoContent
		case "live/redirect":
			return http.StatusFound // not 2xx: denies, and is not followed
		}
		return http.StatusForbidden
	})
	h := &Hook{URL: hs.URL, Cache: time.Hour}
	req := HookRequest{Action: "publish", Protocol: "rtmp", Name: "live/ok", Client: "192.0.2.7:41000", Query: "user=a"}
	if err := h.Check(req); err != nil {
		t.Fatalf("allowed name: %v", err)
	}
	hs.mu.Lock()
	got := hs.last
	hs.mu.Unlock()
	if want := (HookRequest{Action: "publish", Protocol: "rtmp", Name: "live/ok", Client: "192.0.2.7", Query: "user=a"}); got != want {
		t.Errorf("hook got %+v, want %+v", got, want)
	}
	// A second connection from another port is the same decision: cached.
	req.Client = "192.0.2.7:41001"
	if err := h.Check(req); err != nil || hs.calls.Load() != 1 {
		t.Errorf("cached allow: %v, %d calls", err, hs.calls.Load())
	}
	for _, name := range []string{"live/no", "live/redirect"} {
		err := h.Check(HookRequest{Action: "publish", Protocol: "rtsp", Name: name, Client: "192.0.2.7"})
		if !errors.Is(err, ErrHookDenied) {
			t.Errorf("%s: %v, want denied", name, err)
		}
	}
	calls := hs.calls.Load()
	if err := h.Check(HookRequest{Action: "publish", Protocol: "rtsp", Name: "live/no", Client: "192.0.2.7"}); !errors.Is(err, ErrHookDenied) || hs.calls.Load() != calls {
		t.Errorf("cached deny: %v, %d calls, want %d", err, hs.calls.Load(), calls)
	}
	// Another query is another decision.
	if err := h.Check(HookRequest{Action: "publish", Protocol: "rtmp", Name: "live/ok", Client: "192.0.2.7", Query: "user=b"}); err != nil || hs.calls.Load() != calls+1 {
		t.Errorf("new query: %v, %d calls, want %d", err, hs.calls.Load(), calls+1)
	}
}

func TestHookCacheExpires(t *testing.T) {
	var allow atomic.Bool
	allow.Store(true)
	hs := newHookServer(t, func(HookRequest) int {
		if allow.Load() {
			return http.StatusOK
		}
		return http.StatusForbidden
	})
	h := NewHook(hs.URL, 2*time.Second, 50*time.Millisecond)
	req := HookRequest{Action: "publish", Protocol: "rtmp", Name: "live/a", Client: "192.0.2.7"}
	if err := h.Check(req); err != nil {
		t.Fatal(err)
	}
	allow.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for h.Check(req) == nil {
		if time.Now().After(deadline) {
			t.Fatal("an allow stayed cached for 10s with a 50ms cache")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Cache 0 (config) disables caching: every Check calls.
	h = NewHook(hs.URL, 2*time.Second, 0)
	before := hs.calls.Load()
	_ = h.Check(req)
	_ = h.Check(req)
	if n := hs.calls.Load() - before; n != 2 {
		t.Errorf("uncached hook made %d calls for 2 checks", n)
	}
	if NewHook("", time.Second, time.Second) != nil {
		t.Error("no URL must be no hook")
	}
}

// TestHookFailsClosed: a hook that does not answer in time, or cannot be reached, denies.
func TestHookFailsClosed(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer slow.Close()
	defer close(release)
	h := &Hook{URL: slow.URL, Timeout: 200 * time.Millisecond}
	done := make(chan error, 1)
	go func() {
		done <- h.Check(HookRequest{Action: "publish", Protocol: "rtmp", Name: "live/a", Client: "192.0.2.7"})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrHookFailed) {
			t.Errorf("slow hook: %v, want failed (closed)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Check did not return within 30s with a 200ms timeout")
	}

	closed := httptest.NewServer(http.NotFoundHandler())
	url := closed.URL
	closed.Close()
	h = &Hook{URL: url}
	if err := h.Check(HookRequest{Action: "publish", Name: "live/a"}); !errors.Is(err, ErrHookFailed) {
		t.Errorf("unreachable hook: %v, want failed (closed)", err)
	}
}

// TestPublishAuthorizer: with a secret and a hook both must pass, the key first (a keyless
// publisher never reaches the hook); each alone decides alone; neither leaves publishing open.
func TestPublishAuthorizer(t *testing.T) {
	hs := newHookServer(t, func(r HookRequest) int {
		if r.Name == "live/ok" && r.Protocol == "rtsp" && r.Action == "publish" {
			return http.StatusOK
		}
		return http.StatusForbidden
	})
	hook := NewHook(hs.URL, 2*time.Second, 0)
	if PublishAuthorizer("", nil, "rtsp") != nil {
		t.Fatal("neither configured must leave publishing open (nil)")
	}
	both := PublishAuthorizer(secret, hook, "rtsp")
	if err := both("live/ok", "", "192.0.2.7:1"); !errors.Is(err, ErrNoKey) || hs.calls.Load() != 0 {
		t.Errorf("keyless: %v after %d hook calls, want ErrNoKey and none", err, hs.calls.Load())
	}
	if err := both("live/ok", Query(secret, "live/ok", 0), "192.0.2.7:1"); err != nil {
		t.Errorf("key and hook approval: %v", err)
	}
	if err := both("live/no", Query(secret, "live/no", 0), "192.0.2.7:1"); !errors.Is(err, ErrHookDenied) {
		t.Errorf("key but hook denial: %v", err)
	}
	hookOnly := PublishAuthorizer("", hook, "rtsp")
	if err := hookOnly("live/ok", "", "192.0.2.7:1"); err != nil {
		t.Errorf("hook only, approved: %v", err)
	}
	if err := PublishAuthorizer("", hook, "rtmp")("live/ok", "", "192.0.2.7:1"); !errors.Is(err, ErrHookDenied) {
		t.Errorf("hook only, protocol passed through: %v", err)
	}
	keyOnly := PublishAuthorizer(secret, nil, "rtsp")
	if err := keyOnly("live/x", Query(secret, "live/x", 0), ""); err != nil {
		t.Errorf("key only: %v", err)
	}
	if err := keyOnly("live/x", "", ""); !errors.Is(err, ErrNoKey) {
		t.Errorf("key only, no key: %v", err)
	}
}
