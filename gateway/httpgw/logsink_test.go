package httpgw

import (
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/peergate/peergate/internal/cli"
)

// The process log sink blocks completely (a pipe nobody reads): redirects keep being
// answered, the drop counter rises, and the goroutine count stays bounded.
func TestLogSinkBlocked(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	sink := cli.NewAsyncWriter(pw, 16<<10, "")
	defer sink.Close(10 * time.Millisecond)
	dropped := cli.LogDroppedCounter(sink)

	before := runtime.NumGoroutine()
	s := start(t, &Server{Resolver: table(), Logger: slog.New(slog.NewTextHandler(sink, nil))})
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	u := "http://" + s.Addr().String() + "/live/cam1/index.m3u8"

	const clients, each = 4, 500 // ~100 KB of log lines into 64 KiB of pipe and 16 KiB of buffer
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range each {
				res, err := c.Get(u)
				if err != nil {
					errs <- err
					return
				}
				res.Body.Close()
				if res.StatusCode != http.StatusFound {
					errs <- &statusError{res.StatusCode}
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("redirects stopped while the log sink was blocked")
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if got := testutil.ToFloat64(dropped); got == 0 {
		t.Fatal("peergate_log_dropped_total did not rise")
	}
	// Server, flusher and a few keep-alive connections; never one per request.
	if n := runtime.NumGoroutine(); n > before+3*clients+10 {
		t.Fatalf("%d goroutines, %d before", n, before)
	}
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "status " + http.StatusText(e.code) }
