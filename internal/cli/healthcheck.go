package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/peergate/peergate/shared/config"
)

// HealthcheckCommand is the subcommand both binaries answer: `gateway healthcheck [-config F]`.
// It GETs the binary's own admin /readyz (or -path) and exits 0 on 200, 1 otherwise, so an image
// without curl (FROM scratch) can still have a HEALTHCHECK and Kubernetes an exec probe.
const HealthcheckCommand = "healthcheck"

// Healthcheck runs the healthcheck subcommand of binary name ("gateway" or "origin") with args
// (after the subcommand) and env (os.Environ() form, so PEERGATE_LISTEN_ADMIN applies), writes one
// line to out, and returns the exit code.
func Healthcheck(name string, args, env []string, out io.Writer) int {
	fs := flag.NewFlagSet(name+" "+HealthcheckCommand, flag.ContinueOnError)
	fs.SetOutput(out)
	path := fs.String("config", "", "the config file the binary runs with (for listen.admin)")
	endpoint := fs.String("path", "/readyz", "admin endpoint to check (/readyz or /healthz)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addr, err := adminAddr(name, *path, env)
	if err != nil {
		fmt.Fprintf(out, "%s %s: %v\n", name, HealthcheckCommand, err)
		return 1
	}
	status, body, err := get(addr, *endpoint, *timeout)
	if err != nil {
		fmt.Fprintf(out, "%s %s: %v\n", name, HealthcheckCommand, err)
		return 1
	}
	fmt.Fprintf(out, "%s %s: %d %s\n", name, HealthcheckCommand, status, body)
	if status != http.StatusOK {
		return 1
	}
	return 0
}

// adminAddr reads listen.admin from the binary's config and turns a wildcard bind address into
// the loopback address to dial.
func adminAddr(name, path string, env []string) (string, error) {
	var admin string
	switch name {
	case "gateway":
		c, err := config.LoadGateway(path, env)
		if err != nil {
			return "", err
		}
		admin = c.Listen.Admin
	case "origin":
		c, err := config.LoadOrigin(path, env)
		if err != nil {
			return "", err
		}
		admin = c.Listen.Admin
	default:
		return "", fmt.Errorf("no config for binary %q", name)
	}
	if admin == "" {
		return "", errors.New("listen.admin is empty: no admin listener to check")
	}
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return "", fmt.Errorf("listen.admin %q: %w", admin, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port), nil
}

func get(addr, endpoint string, timeout time.Duration) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+endpoint, nil)
	if err != nil {
		return 0, "", err
	}
	client := &http.Client{
		// Never follow anything: the admin listener answers itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}
