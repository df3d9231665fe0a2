// Package registry keeps origins and their stream lists in Redis and mirrors them into gateways.
package registry

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// RouteLibraryLogs sends go-redis's own messages (dial retries, sentinel switches), which
// it otherwise prints to stderr with the log package, to l at Warn level. It is global:
// call it once from main.
func RouteLibraryLogs(l *slog.Logger) {
	redis.SetLogger(libLogger{l.With("component", "go-redis")})
}

type libLogger struct{ l *slog.Logger }

func (g libLogger) Printf(ctx context.Context, format string, v ...any) {
	g.l.WarnContext(ctx, fmt.Sprintf(format, v...))
}
