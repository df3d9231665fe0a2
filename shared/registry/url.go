package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timeouts short enough that a dead Redis is noticed within a heartbeat or two.
const (
	dialTimeout = 2 * time.Second
	ioTimeout   = 2 * time.Second
)

// ParseURL turns a registry URL into go-redis options. Accepted forms:
//
//	redis://[[user]:pass@]host:port[/db]
//	rediss://...                                    (TLS)
//	redis+sentinel://[[user]:pass@]h1:p1,h2:p2/MASTER[?db=N]
//	redis+cluster://[[user]:pass@]h1:p1,h2:p2
//
// rediss+sentinel and rediss+cluster add TLS. Errors never contain the password.
func ParseURL(rawURL string) (*redis.UniversalOptions, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, errors.New("registry URL: missing scheme (want redis://, rediss://, redis+sentinel:// or redis+cluster://)")
	}
	base, topology, _ := strings.Cut(strings.ToLower(scheme), "+")
	var useTLS bool
	switch base {
	case "redis":
	case "rediss":
		useTLS = true
	default:
		return nil, fmt.Errorf("registry URL: unknown scheme %q", safeText(scheme))
	}
	if topology != "" && topology != "sentinel" && topology != "cluster" {
		return nil, fmt.Errorf("registry URL: unknown scheme %q", safeText(scheme))
	}
	o := &redis.UniversalOptions{DialTimeout: dialTimeout, ReadTimeout: ioTimeout, WriteTimeout: ioTimeout}
	// Split at the last '@' of the whole rest: an unescaped '/', '?' or '#' in a password
	// must not push password text into the host part (and so into an error message).
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		user, pass, err := parseUserinfo(rest[:i])
		if err != nil {
			return nil, err
		}
		o.Username, o.Password = user, pass
		rest = rest[i+1:]
	}
	if strings.Contains(rest, "#") {
		return nil, errors.New("registry URL: fragments are not allowed")
	}
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	path, rawQuery, _ := strings.Cut(tail, "?")
	hosts, err := parseHosts(authority)
	if err != nil {
		return nil, err
	}
	o.Addrs = hosts
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, errors.New("registry URL: malformed query")
	}

	switch topology {
	case "":
		if len(hosts) != 1 {
			return nil, fmt.Errorf("registry URL: %s:// takes one host, got %d (use redis+cluster:// or redis+sentinel://)", base, len(hosts))
		}
		if o.DB, err = parseDB(strings.TrimPrefix(path, "/")); err != nil {
			return nil, err
		}
		if err := onlyKeys(query); err != nil {
			return nil, err
		}
	case "sentinel":
		master := strings.TrimPrefix(path, "/")
		if master == "" || strings.Contains(master, "/") {
			return nil, errors.New("registry URL: sentinel URL needs exactly one master name as its path, e.g. /mymaster")
		}
		if master, err = url.PathUnescape(master); err != nil || master == "" {
			return nil, errors.New("registry URL: malformed master name")
		}
		o.MasterName = master
		if o.DB, err = parseDB(query.Get("db")); err != nil {
			return nil, err
		}
		if err := onlyKeys(query, "db"); err != nil {
			return nil, err
		}
	case "cluster":
		if path != "" && path != "/" {
			return nil, errors.New("registry URL: cluster URL takes no path (Redis Cluster has only database 0)")
		}
		if err := onlyKeys(query); err != nil {
			return nil, err
		}
		o.IsClusterMode = true
	}
	if useTLS {
		host, _, _ := net.SplitHostPort(hosts[0])
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	}
	return o, nil
}

// ClusterReload is how often a Cluster client re-reads the slot map while it is in use
// (go-redis's default is a minute). Connection errors trigger an earlier re-read.
const ClusterReload = time.Second

// Dial parses rawURL and returns a client for standalone, Sentinel or Cluster Redis.
// It does not contact Redis: the first command does.
//
// A Cluster client follows a failover within seconds: it re-reads the slot map every
// ClusterReload and after any failed command (go-redis alone re-reads only on MOVED, ASK
// and READONLY replies, and keeps dialing a dead master until its next periodic reload).
func Dial(rawURL string) (redis.UniversalClient, error) {
	o, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if !o.IsClusterMode {
		c := redis.NewUniversalClient(o)
		c.AddHook(serverWords{})
		return c, nil
	}
	co := o.Cluster()
	co.ClusterStateReloadInterval = ClusterReload
	cc := redis.NewClusterClient(co)
	cc.AddHook(reloadOnError{cc})
	cc.OnNewNode(func(node *redis.Client) { node.AddHook(serverWords{}) })
	return cc, nil
}

// reloadOnError re-reads a Cluster's slot map after any failed command or pipeline.
type reloadOnError struct{ cc *redis.ClusterClient }

func (h reloadOnError) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnError) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if topologyError(err) {
			h.cc.ReloadState(ctx)
		}
		return err
	}
}

func (h reloadOnError) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if topologyError(c.Err()) {
				h.cc.ReloadState(ctx)
				break
			}
		}
		return err
	}
}

// topologyError is any failure but a missing key, a wrong type or the caller giving up;
// re-reading the slot map is cheap (go-redis coalesces concurrent requests).
func topologyError(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return false
	}
	if re, ok := errors.AsType[redis.Error](err); ok && strings.HasPrefix(re.Error(), "WRONGTYPE") {
		return false
	}
	return true
}

// reloadTopology asks a Cluster client to re-read the slot map; other clients need nothing.
func reloadTopology(c redis.UniversalClient) {
	if cc, ok := c.(*redis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
}

func parseUserinfo(s string) (user, pass string, err error) {
	u, p, hasPass := strings.Cut(s, ":")
	if user, err = url.PathUnescape(u); err != nil {
		return "", "", errors.New("registry URL: malformed user name encoding")
	}
	if hasPass {
		if pass, err = url.PathUnescape(p); err != nil {
			// The text may be the password: never quote it.
			return "", "", errors.New("registry URL: malformed password encoding")
		}
	}
	if user != "" && !hasPass {
		return "", "", errors.New("registry URL: user name without password (write :password@ or user:password@)")
	}
	return user, pass, nil
}

func parseHosts(s string) ([]string, error) {
	if s == "" {
		return nil, errors.New("registry URL: no host")
	}
	var out []string
	for h := range strings.SplitSeq(s, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			return nil, fmt.Errorf("registry URL: host %q must be host:port", safeText(h))
		}
		if host == "" {
			return nil, fmt.Errorf("registry URL: host %q has an empty host name", safeText(h))
		}
		if strings.ContainsAny(host, " \t\r\n@/\\") {
			return nil, fmt.Errorf("registry URL: host %q contains forbidden characters", safeText(h))
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return nil, fmt.Errorf("registry URL: host %q has an invalid port", safeText(h))
		}
		out = append(out, net.JoinHostPort(host, port))
	}
	return out, nil
}

func parseDB(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 15 || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("registry URL: database %q must be a number from 0 to 15", safeText(s))
	}
	return n, nil
}

func onlyKeys(q url.Values, allowed ...string) error {
	for k := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return fmt.Errorf("registry URL: unknown query parameter %q", safeText(k))
		}
	}
	return nil
}

// safeText bounds what a caller-supplied fragment adds to an error message.
func safeText(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
