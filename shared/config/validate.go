package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/peergate/peergate/shared/cluster"
	"github.com/peergate/peergate/shared/registry"
	"github.com/peergate/peergate/shared/streamname"
)

// keyError names the offending key; every validation error is one.
func keyError(key, format string, args ...any) error {
	return fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...))
}

// Validate checks the common keys.
func (c *Common) Validate() error {
	if c.ClusterKey == "" {
		return keyError("cluster_key", "required (the same secret on every gateway and origin; env %s)", EnvName("cluster_key"))
	}
	if len(c.ClusterKey) < MinClusterKeyLen {
		return keyError("cluster_key", "must be at least %d bytes, got %d", MinClusterKeyLen, len(c.ClusterKey))
	}
	if n := len(c.Admin.Token); n > 0 && n < MinSecretLen {
		return keyError("admin.token", "must be at least %d bytes when set, got %d", MinSecretLen, n)
	}
	if n := len(c.Auth.PublishSecret); n > 0 && n < MinSecretLen {
		return keyError("auth.publish_secret", "must be at least %d bytes when set, got %d", MinSecretLen, n)
	}
	if n := len(c.Auth.PlaySecret); n > 0 && n < MinSecretLen {
		return keyError("auth.play_secret", "must be at least %d bytes when set, got %d", MinSecretLen, n)
	}
	if u := c.Auth.HTTPURL; u != "" {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return keyError("auth.http_url", "want an http:// or https:// URL, got %q", u)
		}
	}
	if c.Auth.HTTPTimeout <= 0 {
		return keyError("auth.http_timeout", "must be positive, got %v", c.Auth.HTTPTimeout)
	}
	if c.Auth.HTTPCache < 0 {
		return keyError("auth.http_cache", "must not be negative, got %v", c.Auth.HTTPCache)
	}
	if c.Auth.RequirePublish && c.Auth.PublishSecret == "" && c.Auth.HTTPURL == "" {
		return keyError("auth.require_publish", "true, but publishing would be open: set auth.publish_secret (PEERGATE_AUTH_PUBLISH_SECRET) or auth.http_url")
	}
	if err := checkRedisURL(c.Redis.URL); err != nil {
		return keyError("redis.url", "%v", err)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return keyError("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return keyError("log.format", "must be text or json, got %q", c.Log.Format)
	}
	return nil
}

// checkRedisURL defers to the registry's own parser, so what validates here is what dials later.
func checkRedisURL(s string) error {
	if s == "" {
		return errors.New("required")
	}
	_, err := registry.ParseURL(s)
	return err
}

// checkListen accepts host:port with a numeric port (0 picks a free one); empty is allowed when optional.
func checkListen(key, addr string, optional bool) error {
	if addr == "" {
		if optional {
			return nil
		}
		return keyError(key, "required")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return keyError(key, "want [host]:port, got %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return keyError(key, "port must be 0..65535, got %q", port)
	}
	return nil
}

// Validate checks every gateway key.
func (c *Gateway) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if err := checkListen("listen.http", c.Listen.HTTP, false); err != nil {
		return err
	}
	for _, l := range []struct{ key, addr string }{
		{"listen.rtsp", c.Listen.RTSP}, {"listen.rtmp", c.Listen.RTMP}, {"listen.admin", c.Listen.Admin},
		{"listen.https", c.Listen.HTTPS},
	} {
		if err := checkListen(l.key, l.addr, true); err != nil {
			return err
		}
	}
	if c.Listen.HTTPS != "" {
		if c.TLS.CertFile == "" {
			return keyError("tls.cert_file", "required with listen.https")
		}
		if c.TLS.KeyFile == "" {
			return keyError("tls.key_file", "required with listen.https")
		}
	}
	if _, err := c.TrustedProxies(); err != nil {
		return err
	}
	if p := c.HTTP.StickyParam; p != "" && (strings.ContainsAny(p, "&=#?%+ \t\r\n") || len(p) > 64) {
		return keyError("http.sticky_param", "must be a plain query parameter name, got %q", p)
	}
	if c.HTTP.SteeringTTL < time.Second || c.HTTP.SteeringTTL > time.Hour || c.HTTP.SteeringTTL%time.Second != 0 {
		return keyError("http.steering_ttl", "must be whole seconds from 1s to 1h (the steering answer's TTL counts seconds), got %s", c.HTTP.SteeringTTL)
	}
	if c.HTTP.RetryAfter < 1e9 {
		return keyError("http.retry_after", "must be at least 1s (Retry-After counts whole seconds), got %s", c.HTTP.RetryAfter)
	}
	if c.HTTP.ReadHeaderTimeout <= 0 {
		return keyError("http.read_header_timeout", "must be greater than zero, got %s", c.HTTP.ReadHeaderTimeout)
	}
	if c.HTTP.MaxConns <= 0 {
		return keyError("http.max_conns", "must be greater than zero, got %d", c.HTTP.MaxConns)
	}
	if c.HTTP.MaxConnsPerIP <= 0 {
		return keyError("http.max_conns_per_ip", "must be greater than zero, got %d", c.HTTP.MaxConnsPerIP)
	}
	if err := c.RTMP.validate(); err != nil {
		return err
	}
	if err := c.RTSP.validate(); err != nil {
		return err
	}
	if !(c.Balance.Hysteresis >= 0 && c.Balance.Hysteresis < 1) { // NaN fails both comparisons
		return keyError("balance.hysteresis", "must be in [0, 1), got %g", c.Balance.Hysteresis)
	}
	if !(c.Balance.SpillAt >= 0 && c.Balance.SpillAt <= 1) {
		return keyError("balance.spill_at", "must be in [0, 1] (0 turns spilling off), got %g", c.Balance.SpillAt)
	}
	if c.Registry.AntiEntropy <= 0 {
		return keyError("registry.anti_entropy", "must be greater than zero, got %s", c.Registry.AntiEntropy)
	}
	if c.Registry.MaxStaleness < 0 {
		return keyError("registry.max_staleness", "must be zero (off) or positive, got %s", c.Registry.MaxStaleness)
	}
	if c.Registry.MaxClockSkew < 0 {
		return keyError("registry.max_clock_skew", "must be zero or positive, got %s", c.Registry.MaxClockSkew)
	}
	return nil
}

func (r *GatewayRTMP) validate() error {
	switch r.Mode {
	case "auto", "redirect", "relay":
	default:
		return keyError("rtmp.mode", "must be auto, redirect or relay, got %q", r.Mode)
	}
	for _, p := range r.FollowFlashVer {
		if p == "" || len(p) > 256 {
			return keyError("rtmp.follow_flashver", "patterns must be 1 to 256 bytes, got %q", p)
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"rtmp.first_request_timeout", r.FirstRequestTimeout}, {"rtmp.handshake_timeout", r.HandshakeTimeout}, {"rtmp.read_timeout", r.ReadTimeout}, {"rtmp.write_timeout", r.WriteTimeout}} {
		if d.v <= 0 {
			return keyError(d.key, "must be greater than zero, got %s", d.v)
		}
	}
	if r.MaxConns <= 0 {
		return keyError("rtmp.max_conns", "must be greater than zero, got %d", r.MaxConns)
	}
	if r.MaxConnsPerIP <= 0 {
		return keyError("rtmp.max_conns_per_ip", "must be greater than zero, got %d", r.MaxConnsPerIP)
	}
	return nil
}

func (r *GatewayRTSP) validate() error {
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"rtsp.first_request_timeout", r.FirstRequestTimeout}, {"rtsp.read_timeout", r.ReadTimeout},
		{"rtsp.write_timeout", r.WriteTimeout}, {"rtsp.dial_timeout", r.DialTimeout},
	} {
		if d.v <= 0 {
			return keyError(d.key, "must be greater than zero, got %s", d.v)
		}
	}
	if r.MaxConns <= 0 {
		return keyError("rtsp.max_conns", "must be greater than zero, got %d", r.MaxConns)
	}
	if r.MaxConnsPerIP <= 0 {
		return keyError("rtsp.max_conns_per_ip", "must be greater than zero, got %d", r.MaxConnsPerIP)
	}
	return nil
}

// TrustedProxies parses http.trusted_proxies; a bare IP means that single address.
func (c *Gateway) TrustedProxies() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(c.HTTP.TrustedProxies))
	for _, s := range c.HTTP.TrustedProxies {
		if p, err := netip.ParsePrefix(s); err == nil {
			// Client addresses are unmapped, so a v4-mapped CIDR (::ffff:10.0.0.0/104) must be too.
			if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, keyError("http.trusted_proxies", "%q is neither a CIDR nor an IP address", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// Validate checks every origin key.
func (c *Origin) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if !cluster.ValidID(c.ID) {
		return keyError("id", "%q is not a valid origin id (letters, digits, '.', '_', '-', at most 64, starting with a letter or digit)", c.ID)
	}
	if strings.ContainsAny(c.Private, " \t\r\n") {
		return keyError("private", "must not contain blanks, got %q", c.Private)
	}
	pub := c.PublicURLs()
	if len(pub) == 0 {
		return keyError("public", "at least one public URL is required (public.http, public.rtsp, ...)")
	}
	for _, scheme := range cluster.Schemes {
		if u, ok := pub[scheme]; ok {
			if err := cluster.ValidatePublicURL(scheme, u); err != nil {
				return keyError("public."+scheme, "%q: %v", u, err)
			}
		}
	}
	if err := checkListen("listen.http", c.Listen.HTTP, false); err != nil {
		return err
	}
	for _, l := range []struct{ key, addr string }{
		{"listen.rtsp", c.Listen.RTSP}, {"listen.rtmp", c.Listen.RTMP}, {"listen.admin", c.Listen.Admin},
		{"listen.rtsp_udp", c.Listen.RTSPUDP},
	} {
		if err := checkListen(l.key, l.addr, true); err != nil {
			return err
		}
	}
	if c.Listen.RTSPUDP != "" {
		if c.Listen.RTSP == "" {
			return keyError("listen.rtsp_udp", "needs listen.rtsp (RTSP over UDP is negotiated on the RTSP connection)")
		}
		_, port, _ := net.SplitHostPort(c.Listen.RTSPUDP)
		if n, _ := strconv.Atoi(port); n%2 != 0 || n == 65535 {
			return keyError("listen.rtsp_udp", "the RTP port must be even (RTCP uses port+1) or 0, got %d", n)
		}
	}
	if c.Heartbeat.Interval <= 0 {
		return keyError("heartbeat.interval", "must be greater than zero, got %s", c.Heartbeat.Interval)
	}
	if c.Heartbeat.TTL <= c.Heartbeat.Interval {
		return keyError("heartbeat.ttl", "must be greater than heartbeat.interval (%s), got %s", c.Heartbeat.Interval, c.Heartbeat.TTL)
	}
	if c.Capacity.MaxClients < 0 {
		return keyError("capacity.max_clients", "must not be negative (0 = unlimited), got %d", c.Capacity.MaxClients)
	}
	if c.Capacity.MaxBandwidth < 0 {
		return keyError("capacity.max_bandwidth", "must not be negative (0 = unlimited), got %d", c.Capacity.MaxBandwidth)
	}
	if c.DrainTimeout < 0 {
		return keyError("drain_timeout", "must not be negative, got %s", c.DrainTimeout)
	}
	if u := c.DrainReconnectURL; u != "" {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "rtmp" && p.Scheme != "rtmps") || p.Host == "" || strings.Trim(p.Path, "/") != "" ||
			p.RawQuery != "" || p.Fragment != "" || p.User != nil {
			return keyError("drain_reconnect_url", "want an rtmp:// or rtmps:// base URL without path or query (the player's app is appended), got %q", u)
		}
	}
	if err := c.validateMedia(); err != nil {
		return err
	}
	seen := make(map[string]bool, len(c.Streams))
	for i, s := range c.Streams {
		key := fmt.Sprintf("streams[%d]", i)
		if !streamname.Valid(s.Name) {
			return keyError(key+".name", "%q is not a valid stream name (see streamname.Valid: slash-separated URL-safe segments)", s.Name)
		}
		if seen[s.Name] {
			return keyError(key+".name", "%q is listed twice", s.Name)
		}
		seen[s.Name] = true
		if s.State != cluster.StreamRunning && s.State != cluster.StreamOnDemand {
			return keyError(key+".state", "must be running or ondemand, got %q", s.State)
		}
		if err := checkSource(s.Source); err != nil {
			return keyError(key+".source", "%q: %v", s.Source, err)
		}
		switch s.Kind() {
		case SourceFile:
			if s.State != cluster.StreamRunning {
				return keyError(key+".state", "a file source is looped live from the start: must be running, got %q", s.State)
			}
		case SourcePull:
			if s.State != cluster.StreamOnDemand {
				return keyError(key+".state", "a URL source is pulled on demand: must be ondemand, got %q", s.State)
			}
		}
	}
	return nil
}

// validateMedia checks the hls, ondemand and limits keys.
func (c *Origin) validateMedia() error {
	switch c.HLS.Variant {
	case "mpegts", "fmp4", "lowlatency":
	default:
		return keyError("hls.variant", "must be mpegts, fmp4 or lowlatency, got %q", c.HLS.Variant)
	}
	// gohlslib refuses fewer than 7 segments for low latency (and fewer than 3 at all).
	if minSeg := map[bool]int{true: 7, false: 3}[c.HLS.Variant == "lowlatency"]; c.HLS.SegmentCount < minSeg {
		return keyError("hls.segment_count", "must be at least %d for variant %s, got %d", minSeg, c.HLS.Variant, c.HLS.SegmentCount)
	}
	if c.HLS.SegmentCount > 100 {
		return keyError("hls.segment_count", "must be at most 100 (memory per stream), got %d", c.HLS.SegmentCount)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"hls.segment_duration", c.HLS.SegmentDuration},
		{"hls.part_duration", c.HLS.PartDuration},
		{"hls.first_segment_timeout", c.HLS.FirstSegmentTimeout},
		{"ondemand.idle_timeout", c.OnDemand.IdleTimeout},
		{"ondemand.start_timeout", c.OnDemand.StartTimeout},
		{"ondemand.retry_max", c.OnDemand.RetryMax},
		{"limits.first_byte_timeout", c.Limits.FirstByteTimeout},
		{"limits.handshake_timeout", c.Limits.HandshakeTimeout},
		{"limits.read_timeout", c.Limits.ReadTimeout},
		{"limits.write_timeout", c.Limits.WriteTimeout},
	} {
		if d.v <= 0 {
			return keyError(d.key, "must be greater than zero, got %s", d.v)
		}
	}
	if c.HLS.PartDuration > c.HLS.SegmentDuration {
		return keyError("hls.part_duration", "must not exceed hls.segment_duration (%s), got %s", c.HLS.SegmentDuration, c.HLS.PartDuration)
	}
	if c.Limits.MaxConns <= 0 {
		return keyError("limits.max_conns", "must be greater than zero, got %d", c.Limits.MaxConns)
	}
	if c.Limits.MaxConnsPerIP <= 0 {
		return keyError("limits.max_conns_per_ip", "must be greater than zero, got %d", c.Limits.MaxConnsPerIP)
	}
	if c.Limits.MaxViewers <= 0 {
		return keyError("limits.max_viewers", "must be greater than zero, got %d", c.Limits.MaxViewers)
	}
	return nil
}

// Kind tells how the stream is fed: SourceNone, SourceFile or SourcePull.
func (s Stream) Kind() string {
	switch {
	case s.Source == "":
		return SourceNone
	case !strings.Contains(s.Source, "://") || strings.HasPrefix(s.Source, "file://"):
		return SourceFile
	}
	return SourcePull
}

// FilePath is the file of a SourceFile stream (a file:// URL becomes its path).
func (s Stream) FilePath() string {
	if p, ok := strings.CutPrefix(s.Source, "file://"); ok {
		if u, err := url.Parse(s.Source); err == nil && u.Path != "" {
			return u.Path
		}
		return p
	}
	return s.Source
}

// CheckFiles makes sure every file source can be opened now (the origin calls it at start;
// Validate does no I/O, so a config can be checked on another host).
func (c *Origin) CheckFiles() error {
	for i, s := range c.Streams {
		if s.Kind() != SourceFile {
			continue
		}
		if err := checkFile(s.FilePath()); err != nil {
			return keyError(fmt.Sprintf("streams[%d].source", i), "%v", err)
		}
	}
	return nil
}

// checkFile makes sure a looped file can be opened now, so a typo stops the start instead of a retry loop.
func checkFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	return nil
}

// PublicURLs returns the configured public base URLs by scheme, without the empty ones.
func (c *Origin) PublicURLs() cluster.Public {
	out := cluster.Public{}
	for scheme, u := range map[string]string{
		"http": c.Public.HTTP, "https": c.Public.HTTPS,
		"rtsp": c.Public.RTSP, "rtsps": c.Public.RTSPS,
		"rtmp": c.Public.RTMP, "rtmps": c.Public.RTMPS,
	} {
		if u != "" {
			out[scheme] = strings.TrimSuffix(u, "/")
		}
	}
	return out
}

// ClusterCapacity converts the capacity keys to the registry's form.
func (c *Origin) ClusterCapacity() cluster.Capacity {
	return cluster.Capacity{MaxClients: c.Capacity.MaxClients, MaxBandwidthBps: c.Capacity.MaxBandwidth}
}

// ClusterStreams converts the whole stream list to the registry's form, each with its configured state.
func (c *Origin) ClusterStreams() []cluster.Stream {
	out := make([]cluster.Stream, 0, len(c.Streams))
	for _, s := range c.Streams {
		out = append(out, cluster.Stream{Name: s.Name, State: s.State})
	}
	return out
}

// StaticStreams are the entries without a source, in the registry's form: announced as configured, never ingested.
func (c *Origin) StaticStreams() []cluster.Stream {
	out := make([]cluster.Stream, 0, len(c.Streams))
	for _, s := range c.Streams {
		if s.Kind() == SourceNone {
			out = append(out, cluster.Stream{Name: s.Name, State: s.State})
		}
	}
	return out
}

// SourceStreams are the entries of one kind (SourceFile or SourcePull).
func (c *Origin) SourceStreams(kind string) []Stream {
	var out []Stream
	for _, s := range c.Streams {
		if s.Kind() == kind {
			out = append(out, s)
		}
	}
	return out
}

// checkSource accepts an empty source, a file path, or a URL of a scheme the media code can pull.
func checkSource(s string) error {
	if s == "" {
		return nil
	}
	if strings.ContainsAny(s, "\r\n\x00") {
		return errors.New("contains control characters")
	}
	if !strings.Contains(s, "://") {
		return nil // a file path
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "file":
	default:
		return fmt.Errorf("scheme %q is not supported (rtsp, rtsps, rtmp, rtmps, http, https or a file path)", u.Scheme)
	}
	if u.Scheme != "file" && u.Host == "" {
		return errors.New("host is missing")
	}
	return nil
}
