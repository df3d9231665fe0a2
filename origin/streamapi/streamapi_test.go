package streamapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/shared/cluster"
)

type fakeRegistry struct {
	mu      sync.Mutex
	put     []cluster.Stream
	removed []string
}

func (f *fakeRegistry) PutStream(s cluster.Stream) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.put = append(f.put, s)
}

func (f *fakeRegistry) RemoveStream(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, name)
}

func TestHandler(t *testing.T) {
	reg := &fakeRegistry{}
	h := New(reg, []cluster.Stream{{Name: "demo", State: cluster.StreamRunning}}, slog.New(slog.DiscardHandler))
	h.Token = testToken
	srv := httptest.NewServer(h)
	defer srv.Close()

	do := func(method, path, body string) int {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	cases := []struct {
		desc, method, path, body string
		want                     int
	}{
		{"add running by default", "PUT", "/api/v1/streams/live/cam1", "", 204},
		{"add ondemand", "PUT", "/api/v1/streams/live/cam2", `{"state":"ondemand"}`, 204},
		{"bad state", "PUT", "/api/v1/streams/x", `{"state":"weird"}`, 400},
		{"bad json", "PUT", "/api/v1/streams/x", `{`, 400},
		{"bad name", "PUT", "/api/v1/streams/a/../b", "", 400},
		{"escaped name", "PUT", "/api/v1/streams/%2e%2e", "", 400},
		{"too large", "PUT", "/api/v1/streams/x", `{"state":"` + strings.Repeat("a", maxBody) + `"}`, 413},
		{"delete", "DELETE", "/api/v1/streams/live/cam1", "", 204},
		{"delete unknown", "DELETE", "/api/v1/streams/live/none", "", 404},
		{"method", "POST", "/api/v1/streams/x", "", 405},
		{"list wrong method", "POST", "/api/v1/streams", "", 404},
	}
	for _, c := range cases {
		if got := do(c.method, c.path, c.body); got != c.want {
			t.Errorf("%s: %s %s = %d, want %d", c.desc, c.method, c.path, got, c.want)
		}
	}
	if len(reg.put) != 2 || reg.put[0].Name != "live/cam1" || reg.put[0].State != "running" || reg.put[1].State != "ondemand" {
		t.Fatalf("registry got %+v", reg.put)
	}
	if len(reg.removed) != 1 || reg.removed[0] != "live/cam1" {
		t.Fatalf("registry removed %v", reg.removed)
	}
	res, err := http.Get(srv.URL + "/api/v1/streams")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var list []cluster.Stream
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "demo" || list[1].Name != "live/cam2" {
		t.Fatalf("list = %+v", list)
	}
}

// slowRegistry holds the first PutStream until release is closed, and keeps the last
// state per name.
type slowRegistry struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	state   map[string]bool
}

func (r *slowRegistry) PutStream(s cluster.Stream) {
	r.once.Do(func() {
		close(r.entered)
		<-r.release
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state[s.Name] = true
}

func (r *slowRegistry) RemoveStream(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.state, name)
}

// TestPutDeleteRaceKeepsRegistryInStep: a DELETE that arrives while a PUT of the same NAME
// is still being written must not leave the registry announcing a stream the API no
// longer lists.
func TestPutDeleteRaceKeepsRegistryInStep(t *testing.T) {
	reg := &slowRegistry{entered: make(chan struct{}), release: make(chan struct{}), state: map[string]bool{}}
	h := New(reg, nil, slog.New(slog.DiscardHandler))
	h.Token = testToken
	srv := httptest.NewServer(h)
	defer srv.Close()
	do := func(method string) {
		req, _ := http.NewRequest(method, srv.URL+"/api/v1/streams/live/x", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { do(http.MethodPut) })
	select {
	case <-reg.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("PUT never reached the registry")
	}
	deleted := make(chan struct{})
	wg.Go(func() {
		defer close(deleted)
		do(http.MethodDelete)
	})
	// The race is exercised once the DELETE is inside the handler, waiting for the lock the
	// PUT holds (or, were the registry call outside the lock, already answered).
	mediatest.EventuallyT(t, 5*time.Second, func() bool {
		select {
		case <-deleted:
			return true
		default:
			return handlerWaitsForLock()
		}
	}, "DELETE neither waiting in the handler nor answered")
	close(reg.release)
	wg.Wait()

	h.mu.Lock()
	_, listed := h.streams["live/x"]
	h.mu.Unlock()
	reg.mu.Lock()
	announced := reg.state["live/x"]
	reg.mu.Unlock()
	if listed != announced {
		t.Fatalf("API lists live/x: %v, registry announces it: %v", listed, announced)
	}
}

// handlerWaitsForLock reports whether a goroutine is blocked on a mutex inside
// Handler.ServeHTTP.
func handlerWaitsForLock() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "(*Handler).ServeHTTP") && strings.Contains(g, "sync.(*Mutex).Lock") {
			return true
		}
	}
	return false
}

const testToken = "admin-token-0123456789"

// TestAuth: PUT and DELETE need the bearer token, are disabled without one, and leave the
// registry untouched when refused; the list stays readable.
func TestAuth(t *testing.T) {
	cases := []struct {
		desc, token, method, auth string
		want                      int
	}{
		{"no header", testToken, "PUT", "", 401},
		{"wrong token", testToken, "PUT", "Bearer admin-token-0123456788", 401},
		{"token prefix", testToken, "PUT", "Bearer admin-token", 401},
		{"basic scheme", testToken, "PUT", "Basic " + testToken, 401},
		{"no scheme", testToken, "PUT", testToken, 401},
		{"delete no header", testToken, "DELETE", "", 401},
		{"delete wrong", testToken, "DELETE", "Bearer nope", 401},
		{"right token", testToken, "PUT", "Bearer " + testToken, 204},
		{"right token delete", testToken, "DELETE", "Bearer " + testToken, 204},
		{"disabled, no header", "", "PUT", "", 403},
		{"disabled, any header", "", "PUT", "Bearer ", 403},
		{"disabled delete", "", "DELETE", "Bearer " + testToken, 403},
		{"list open", testToken, "GET", "", 200},
		{"list open when disabled", "", "GET", "", 200},
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			reg := &fakeRegistry{}
			h := New(reg, []cluster.Stream{{Name: "live/cam1", State: cluster.StreamRunning}}, slog.New(slog.DiscardHandler))
			h.Token = c.token
			srv := httptest.NewServer(h)
			defer srv.Close()
			path := "/api/v1/streams/live/cam1"
			if c.method == "GET" {
				path = "/api/v1/streams"
			}
			req, _ := http.NewRequest(c.method, srv.URL+path, nil)
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != c.want {
				t.Fatalf("%s %s = %d %s, want %d", c.method, path, res.StatusCode, body, c.want)
			}
			reg.mu.Lock()
			changed := len(reg.put) + len(reg.removed)
			reg.mu.Unlock()
			if (res.StatusCode == 204) != (changed == 1) {
				t.Fatalf("status %d but %d registry changes", res.StatusCode, changed)
			}
			switch res.StatusCode {
			case 401:
				if res.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			case 403:
				if !strings.Contains(string(body), "admin.token") {
					t.Errorf("403 body %q does not say how to enable", body)
				}
			}
		})
	}
}
