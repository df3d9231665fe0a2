package streamapi

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/shared/cluster"
)

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
	<-reg.entered
	wg.Go(func() { do(http.MethodDelete) })
	time.Sleep(100 * time.Millisecond) // the DELETE is in flight
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
