package registry

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
)

// libLog collects go-redis's own messages as JSON lines, as a binary with log.format json
// writes them; tests check that they arrive there (and so not unstructured on stderr).
var libLog lockedBuffer

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSuffix(l.b.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestMain(m *testing.M) {
	RouteLibraryLogs(slog.New(slog.NewJSONHandler(&libLog, nil)))
	os.Exit(m.Run())
}
