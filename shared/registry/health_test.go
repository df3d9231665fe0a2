package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestHealthFromStats(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	cases := []struct {
		name     string
		st       WatcherStats
		degraded bool
		age      time.Duration
		reason   string
	}{
		{"current", WatcherStats{Connected: true, LastContact: now, Origins: 3}, false, 0, ""},
		{"before the first contact", WatcherStats{}, false, 0, ""},
		{"unreachable", WatcherStats{LastContact: now.Add(-4 * time.Second), Origins: 3}, true, 4 * time.Second, "registry unreachable for 4s"},
		{"overdue unread", WatcherStats{Connected: true, LastContact: now, Origins: 3, Overdue: 1, OverdueSince: now.Add(-2 * time.Second)},
			true, 2 * time.Second, "1 origins overdue and kept because Redis could not confirm them gone"},
		{"mass", WatcherStats{Connected: true, LastContact: now, Origins: 3, Overdue: 3, MassHeld: 3, OverdueSince: now.Add(-5 * time.Second)},
			true, 5 * time.Second, "3 of 3 origins vanished from Redis at once"},
	}
	for _, c := range cases {
		h := c.st.Health(now)
		if h.Degraded != c.degraded || h.CopyAge != c.age || !strings.Contains(h.Reason, c.reason) || (c.reason == "") != (h.Reason == "") {
			t.Errorf("%s: %+v; want degraded %v, age %s, reason containing %q", c.name, h, c.degraded, c.age, c.reason)
		}
	}
}

// go-redis repeats itself many times a second while a node is down: the routed logger lets
// a burst through per window as JSON through slog, counts the rest and reports the count.
func TestLibraryLogsRateLimited(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	clock := time.Unix(0, 0)
	g := &libLogger{l: slog.New(slog.NewJSONHandler(&buf, nil)).With("component", "go-redis"), now: func() time.Time { return clock }}
	for i := range 50 {
		g.Printf(context.Background(), "redis: pool.go:770: dial %d failed", i)
	}
	clock = clock.Add(libWindow)
	g.Printf(context.Background(), "redis: after the window")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != libBurst+1 {
		t.Fatalf("%d lines for 51 messages, want %d:\n%s", len(lines), libBurst+1, buf.String())
	}
	for i, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec["component"] != "go-redis" || rec["level"] != "WARN" {
			t.Fatalf("line %d not a structured go-redis warning: %q (%v)", i, l, err)
		}
		if i == libBurst && rec["suppressed_before"] != float64(50-libBurst) {
			t.Fatalf("last line %q does not count the %d suppressed messages", l, 50-libBurst)
		}
	}
	// Below the configured level nothing is written at all.
	buf.Reset()
	quiet := &libLogger{l: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError})), now: time.Now}
	quiet.Printf(context.Background(), "redis: hidden")
	if buf.Len() != 0 {
		t.Fatalf("a warning passed log.level error: %q", buf.String())
	}
}
