package pubauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults of the Hook settings.
const (
	DefaultHookTimeout = 2 * time.Second
	DefaultHookCache   = 5 * time.Second
	// hookCacheMax bounds the decision cache; a full cache drops its expired entries, then
	// everything.
	hookCacheMax = 10000
)

// Errors of Hook.Check.
var (
	ErrHookDenied = errors.New("authorization hook denied")
	ErrHookFailed = errors.New("authorization hook unreachable") // timeout, refused, bad URL: fail closed
)

// HookRequest is the JSON body POSTed to the hook URL.
type HookRequest struct {
	Action   string `json:"action"`   // "publish"
	Protocol string `json:"protocol"` // "rtmp" or "rtsp"
	Name     string `json:"name"`     // the stream NAME
	Client   string `json:"client"`   // the client's IP address, without port
	Query    string `json:"query"`    // the raw query the client sent, without '?'
}

// Hook asks an HTTP endpoint whether to allow an action: it POSTs a HookRequest as JSON, a
// 2xx answer allows, anything else (other status, timeout, connection error) denies.
// Decisions, both ways, are cached for Cache per (action, protocol, name, query, client).
// Set the fields before the first Check; they must not change after.
type Hook struct {
	// URL receives the POSTs. Required.
	URL string
	// Timeout bounds one call, connection included; a call that runs out denies. It defaults
	// to 2 seconds.
	Timeout time.Duration
	// Cache is how long a decision is reused. It defaults to 5 seconds; negative disables it.
	Cache time.Duration
	// Client makes the calls. It defaults to a client with Timeout and no redirects followed.
	Client *http.Client

	once   sync.Once
	client *http.Client
	mu     sync.Mutex
	cache  map[HookRequest]hookDecision
}

type hookDecision struct {
	err   error
	until time.Time
}

func (h *Hook) init() {
	h.once.Do(func() {
		if h.Timeout <= 0 {
			h.Timeout = DefaultHookTimeout
		}
		if h.Cache == 0 {
			h.Cache = DefaultHookCache
		}
		h.client = h.Client
		if h.client == nil {
			h.client = &http.Client{
				Timeout:       h.Timeout,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			}
		}
		h.cache = map[HookRequest]hookDecision{}
	})
}

// Check asks the hook (or its cache) about req; client may carry a port, which is dropped.
func (h *Hook) Check(req HookRequest) error {
	h.init()
	if host, _, err := net.SplitHostPort(req.Client); err == nil {
		req.Client = host
	}
	now := time.Now()
	if h.Cache > 0 {
		h.mu.Lock()
		d, ok := h.cache[req]
		h.mu.Unlock()
		if ok && now.Before(d.until) {
			return d.err
		}
	}
	err := h.call(req)
	if h.Cache > 0 {
		h.mu.Lock()
		if len(h.cache) >= hookCacheMax {
			for k, d := range h.cache {
				if !now.Before(d.until) {
					delete(h.cache, k)
				}
			}
			if len(h.cache) >= hookCacheMax {
				clear(h.cache)
			}
		}
		h.cache[req] = hookDecision{err: err, until: now.Add(h.Cache)}
		h.mu.Unlock()
	}
	return err
}

func (h *Hook) call(req HookRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHookFailed, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHookFailed, err)
	}
	r.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(r)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHookFailed, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: status %d", ErrHookDenied, resp.StatusCode)
	}
	return nil
}

// PublishAuthorizer composes the publish checks a listener's Authorize field takes for
// protocol ("rtmp", "rtsp"): with a secret, a valid publish key is required (checked first,
// so keyless publishers never reach the hook); with a hook, its approval is required too.
// Both configured means both must pass. Neither configured returns nil: anyone may publish.
func PublishAuthorizer(secret string, hook *Hook, protocol string) func(name, query, client string) error {
	key := Authorizer(secret)
	switch {
	case key == nil && hook == nil:
		return nil
	case hook == nil:
		return func(name, query, _ string) error { return key(name, query) }
	}
	return func(name, query, client string) error {
		if key != nil {
			if err := key(name, query); err != nil {
				return err
			}
		}
		return hook.Check(HookRequest{Action: "publish", Protocol: protocol, Name: name, Client: client, Query: query})
	}
}

// NewHook returns the hook for the auth.http_url, auth.http_timeout and auth.http_cache
// keys, or nil when url is "". A cache of 0 disables caching.
func NewHook(url string, timeout, cache time.Duration) *Hook {
	if url == "" {
		return nil
	}
	if cache == 0 {
		cache = -1
	}
	return &Hook{URL: url, Timeout: timeout, Cache: cache}
}
