package cli

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"
)

// LogSink collects the JSON log lines a RunFunc writes, so in-process tests can read back the
// addresses of listeners bound to :0 from their "listening" lines.
type LogSink struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
}

func (l *LogSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.raw.Write(p)
	var m map[string]any
	if json.Unmarshal(p, &m) == nil {
		l.lines = append(l.lines, m)
	}
	return len(p), nil
}

// Addr waits up to 10 s for the listener's "listening" line and returns its address.
func (l *LogSink) Addr(t testing.TB, listener string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for _, m := range l.lines {
			if m["msg"] == "listening" && m["listener"] == listener {
				l.mu.Unlock()
				return m["addr"].(string)
			}
		}
		l.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q listening line in:\n%s", listener, l.String())
	return ""
}

// String is everything logged so far.
func (l *LogSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw.String()
}
