// Package cli holds what the gateway and origin binaries share around their run function: flags, signals, exit codes.
package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// RunFunc wires a binary from the config file at path and the environment, logs to logOut,
// and serves until ctx is done.
type RunFunc func(ctx context.Context, path string, env []string, logOut io.Writer) error

// Main parses -config, runs run until SIGTERM or SIGINT, and exits 1 with the error if it fails.
// After the first signal the default action returns, so a second one kills the process.
// The process logs to stderr through an AsyncWriter: no request waits on its log line, and
// lines a slow stderr cannot take are dropped and counted (register LogDroppedCounter(logOut)).
// `NAME healthcheck [-config F]` checks a running binary's admin /readyz instead (see Healthcheck).
func Main(name string, run RunFunc) {
	if len(os.Args) > 1 && os.Args[1] == HealthcheckCommand {
		os.Exit(Healthcheck(name, os.Args[2:], os.Environ(), os.Stdout))
	}
	path := flag.String("config", "", "YAML config file (optional; PEERGATE_* variables override it)")
	prefix := flag.String("log-prefix", "", "text put before every log line (make demo labels its processes so)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	context.AfterFunc(ctx, stop)
	logOut := NewAsyncWriter(os.Stderr, DefaultLogBuffer, *prefix)
	err := run(ctx, *path, os.Environ(), logOut)
	stop()
	logOut.Close(2 * time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
