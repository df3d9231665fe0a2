// Package registry keeps origins and their stream lists in Redis and mirrors them into gateways.
package registry

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Library log limits: at most libBurst lines per libWindow; the rest are counted and the
// count is reported with the next line let through.
const (
	libBurst  = 5
	libWindow = 10 * time.Second
)

// RouteLibraryLogs sends go-redis's own messages (dial retries, pool errors, sentinel
// switches), which it otherwise prints unstructured to stderr, to l at Warn level, so they
// follow log.level and log.format. They are rate-limited: a dead node makes go-redis repeat
// itself many times a second. It is global: call it once from main.
func RouteLibraryLogs(l *slog.Logger) {
	redis.SetLogger(&libLogger{l: l.With("component", "go-redis"), now: time.Now})
}

type libLogger struct {
	l   *slog.Logger
	now func() time.Time

	mu         sync.Mutex
	windowFrom time.Time
	inWindow   int
	suppressed int
}

func (g *libLogger) Printf(ctx context.Context, format string, v ...any) {
	g.mu.Lock()
	now := g.now()
	if now.Sub(g.windowFrom) >= libWindow {
		g.windowFrom, g.inWindow = now, 0
	}
	if g.inWindow >= libBurst {
		g.suppressed++
		g.mu.Unlock()
		return
	}
	g.inWindow++
	dropped := g.suppressed
	g.suppressed = 0
	g.mu.Unlock()
	if dropped > 0 {
		g.l.WarnContext(ctx, fmt.Sprintf(format, v...), "suppressed_before", dropped)
		return
	}
	g.l.WarnContext(ctx, fmt.Sprintf(format, v...))
}
