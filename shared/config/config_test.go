package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const key = "0123456789abcdef-test"

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGatewayDefaults(t *testing.T) {
	t.Parallel()
	c, err := LoadGateway("", []string{"PEERGATE_CLUSTER_KEY=" + key, "HOME=/root"})
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultGateway()
	want.ClusterKey = key
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
	if c.Listen.HTTP != ":8080" || c.Listen.RTSP != ":8554" || c.Listen.RTMP != ":1935" || c.Listen.Admin != ":9080" ||
		c.Redis.URL != "redis://127.0.0.1:6379/0" || c.HTTP.RetryAfter != 2*time.Second ||
		c.HTTP.ReadHeaderTimeout != 5*time.Second || c.HTTP.MaxConns != 10000 || c.HTTP.Steering || c.HTTP.SteeringTTL != 5*time.Second || c.Balance.Hysteresis != 0.10 || c.Balance.SpillAt != 0.8 ||
		c.Registry.AntiEntropy != 30*time.Second || c.Registry.MaxClockSkew != time.Second || c.Log.Level != "info" || c.Log.Format != "text" {
		t.Fatalf("defaults drifted: %+v", c)
	}
	if c.RTMP.Mode != "auto" || c.RTMP.FollowFlashVer != nil || c.RTMP.HandshakeTimeout != 10*time.Second ||
		c.RTMP.ReadTimeout != 10*time.Second || c.RTMP.WriteTimeout != 10*time.Second || c.RTMP.MaxConns != 10000 {
		t.Fatalf("rtmp defaults drifted: %+v", c.RTMP)
	}
}

func TestGatewayRTMPFileAndEnv(t *testing.T) {
	t.Parallel()
	p := writeFile(t, `
cluster_key: from-file-0123456789
rtmp:
  mode: relay
  follow_flashver: ["SRS/*", "FMLE/3.0 (compatible; FMSc/1.0)"]
  handshake_timeout: 3s
  max_conns: 20
`)
	c, err := LoadGateway(p, []string{"PEERGATE_RTMP_MODE=redirect", "PEERGATE_RTMP_READ_TIMEOUT=4s", "PEERGATE_RTMP_WRITE_TIMEOUT=5s"})
	if err != nil {
		t.Fatal(err)
	}
	if c.RTMP.Mode != "redirect" || c.RTMP.HandshakeTimeout != 3*time.Second || c.RTMP.ReadTimeout != 4*time.Second ||
		c.RTMP.WriteTimeout != 5*time.Second || c.RTMP.MaxConns != 20 ||
		!reflect.DeepEqual(c.RTMP.FollowFlashVer, []string{"SRS/*", "FMLE/3.0 (compatible; FMSc/1.0)"}) {
		t.Fatalf("got %+v", c.RTMP)
	}
	c, err = LoadGateway("", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTMP_FOLLOW_FLASHVER=SRS/*, librtmp-redirect*", "PEERGATE_RTMP_MAX_CONNS=7"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.RTMP.FollowFlashVer, []string{"SRS/*", "librtmp-redirect*"}) || c.RTMP.MaxConns != 7 {
		t.Fatalf("env: %+v", c.RTMP)
	}
}

func TestOriginDefaults(t *testing.T) {
	t.Parallel()
	c, err := LoadOrigin("", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_ID=o1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.HTTP != ":8081" || c.Listen.RTSP != ":8555" || c.Listen.RTMP != ":1936" || c.Listen.Admin != ":9081" ||
		c.Heartbeat.Interval != time.Second || c.Heartbeat.TTL != 3*time.Second || c.DrainTimeout != 30*time.Second {
		t.Fatalf("defaults drifted: %+v", c)
	}
	wantHLS := HLS{Variant: "mpegts", SegmentCount: 7, SegmentDuration: time.Second, PartDuration: 200 * time.Millisecond, FirstSegmentTimeout: 10 * time.Second}
	wantOD := OnDemand{IdleTimeout: 30 * time.Second, StartTimeout: 10 * time.Second, RetryMax: 30 * time.Second}
	wantLimits := Limits{MaxConns: 4096, MaxConnsPerIP: 1024, FirstByteTimeout: 5 * time.Second, HandshakeTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxViewers: 4096}
	if c.HLS != wantHLS || c.OnDemand != wantOD || c.Limits != wantLimits || c.Listen.RTSPUDP != "" {
		t.Fatalf("media defaults drifted: %+v %+v %+v %q", c.HLS, c.OnDemand, c.Limits, c.Listen.RTSPUDP)
	}
	pub := c.PublicURLs()
	want := map[string]string{"http": "http://127.0.0.1:8081", "rtsp": "rtsp://127.0.0.1:8555", "rtmp": "rtmp://127.0.0.1:1936"}
	if !reflect.DeepEqual(map[string]string(pub), want) {
		t.Fatalf("public = %v", pub)
	}
}

func TestOriginIDDefaultsToHostname(t *testing.T) {
	t.Parallel()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadOrigin("", []string{"PEERGATE_CLUSTER_KEY=" + key})
	if err != nil {
		t.Fatalf("hostname %q: %v", h, err)
	}
	if c.ID != h {
		t.Fatalf("id = %q, want hostname %q", c.ID, h)
	}
}

func TestGatewayFileAndEnv(t *testing.T) {
	t.Parallel()
	p := writeFile(t, `
cluster_key: from-file-0123456789
redis:
  url: redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster
log: {level: debug, format: json}
listen:
  http: 127.0.0.1:0
  rtsp: ""
http:
  trusted_proxies: [10.0.0.0/8, 192.168.1.1]
  sticky_param: token
  retry_after: 5s
  max_conns: 50
balance: {hysteresis: 0.2}
registry: {anti_entropy: 1m}
`)
	c, err := LoadGateway(p, []string{
		"PEERGATE_LOG_LEVEL=warn",
		"PEERGATE_HTTP_TRUSTED_PROXIES= 127.0.0.1 , ::1/128,",
		"PEERGATE_HTTP_MAX_CONNS=77",
		"PEERGATE_BALANCE_HYSTERESIS=0.3",
		"PEERGATE_REGISTRY_ANTI_ENTROPY=45s",
		"OTHER=1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.ClusterKey != "from-file-0123456789" || c.Log.Level != "warn" || c.Log.Format != "json" ||
		c.Listen.HTTP != "127.0.0.1:0" || c.Listen.RTSP != "" || c.Listen.RTMP != ":1935" ||
		c.HTTP.StickyParam != "token" || c.HTTP.RetryAfter != 5*time.Second || c.HTTP.MaxConns != 77 ||
		c.Balance.Hysteresis != 0.3 || c.Registry.AntiEntropy != 45*time.Second ||
		c.Redis.URL != "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster" {
		t.Fatalf("got %+v", c)
	}
	if !reflect.DeepEqual(c.HTTP.TrustedProxies, []string{"127.0.0.1", "::1/128"}) {
		t.Fatalf("trusted_proxies = %q", c.HTTP.TrustedProxies)
	}
	pfx, err := c.TrustedProxies()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pfx, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}) {
		t.Fatalf("prefixes = %v", pfx)
	}
	// A v4-mapped CIDR or address counts as its IPv4 form, the form client addresses take.
	c.HTTP.TrustedProxies = []string{"::ffff:10.0.0.0/104", "::ffff:192.0.2.7"}
	pfx, err = c.TrustedProxies()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pfx, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32")}) {
		t.Fatalf("mapped prefixes = %v", pfx)
	}
}

func TestOriginFileAndEnv(t *testing.T) {
	t.Parallel()
	clip := filepath.Join(t.TempDir(), "demo.mp4")
	if err := os.WriteFile(clip, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := writeFile(t, `
cluster_key: from-file-0123456789
id: edge-1
private: 10.1.2.3
public:
  http: http://edge1.example.com:8081/
  https: https://edge1.example.com
  rtmp: ""
heartbeat: {interval: 500ms, ttl: 2s}
capacity: {max_clients: 100, max_bandwidth: 1000000000}
drain_timeout: 10s
drain_reconnect_url: rtmp://gw.example.com:1935
hls: {variant: lowlatency, part_duration: 100ms}
ondemand: {idle_timeout: 5s}
limits: {max_conns: 50}
listen: {rtsp_udp: "127.0.0.1:8000"}
streams:
  - name: demo
    source: `+clip+`
  - name: live/cam1
    state: ondemand
    source: rtsp://cam1.local:554/h264
  - name: live/cam2
    source: http://cam2.local/live/index.m3u8
  - name: static
`)
	c, err := LoadOrigin(p, []string{
		"PEERGATE_PUBLIC_RTSP=rtsp://edge1.example.com:8555",
		"PEERGATE_HEARTBEAT_TTL=4s",
		"PEERGATE_CAPACITY_MAX_CLIENTS=200",
		"PEERGATE_ID=edge-2",
		"PEERGATE_HLS_SEGMENT_COUNT=9",
		"PEERGATE_ONDEMAND_START_TIMEOUT=3s",
		"PEERGATE_LIMITS_READ_TIMEOUT=4s",
		"PEERGATE_LISTEN_RTSP_UDP=127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "edge-2" || c.Private != "10.1.2.3" || c.Heartbeat.Interval != 500*time.Millisecond ||
		c.Heartbeat.TTL != 4*time.Second || c.Capacity.MaxClients != 200 || c.Capacity.MaxBandwidth != 1e9 ||
		c.DrainTimeout != 10*time.Second || c.DrainReconnectURL != "rtmp://gw.example.com:1935" {
		t.Fatalf("got %+v", c)
	}
	wantPub := map[string]string{
		"http": "http://edge1.example.com:8081", "https": "https://edge1.example.com", "rtsp": "rtsp://edge1.example.com:8555",
	}
	if got := c.PublicURLs(); !reflect.DeepEqual(map[string]string(got), wantPub) {
		t.Fatalf("public = %v", got)
	}
	if c.HLS.Variant != "lowlatency" || c.HLS.PartDuration != 100*time.Millisecond || c.HLS.SegmentCount != 9 ||
		c.OnDemand.IdleTimeout != 5*time.Second || c.OnDemand.StartTimeout != 3*time.Second ||
		c.Limits.MaxConns != 50 || c.Limits.ReadTimeout != 4*time.Second || c.Listen.RTSPUDP != "127.0.0.1:0" || c.Listen.RTSP != ":8555" {
		t.Fatalf("media keys: %+v %+v %+v %+v", c.HLS, c.OnDemand, c.Limits, c.Listen)
	}
	wantStreams := []Stream{
		{Name: "demo", State: "running", Source: clip},
		{Name: "live/cam1", State: "ondemand", Source: "rtsp://cam1.local:554/h264"},
		{Name: "live/cam2", State: "ondemand", Source: "http://cam2.local/live/index.m3u8"}, // a URL source defaults to ondemand
		{Name: "static", State: "running"},
	}
	if !reflect.DeepEqual(c.Streams, wantStreams) {
		t.Fatalf("streams = %+v", c.Streams)
	}
	if cs := c.ClusterStreams(); len(cs) != 4 || cs[1].Name != "live/cam1" || cs[1].State != "ondemand" {
		t.Fatalf("cluster streams = %+v", cs)
	}
	if ss := c.StaticStreams(); len(ss) != 1 || ss[0].Name != "static" || ss[0].State != "running" {
		t.Fatalf("static streams = %+v", ss)
	}
	if fs := c.SourceStreams(SourceFile); len(fs) != 1 || fs[0].Name != "demo" || fs[0].FilePath() != clip {
		t.Fatalf("file streams = %+v", fs)
	}
	if ps := c.SourceStreams(SourcePull); len(ps) != 2 || ps[1].Name != "live/cam2" {
		t.Fatalf("pull streams = %+v", ps)
	}
	if err := c.CheckFiles(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(clip); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckFiles(); err == nil || !strings.Contains(err.Error(), "streams[0].source: open "+clip) {
		t.Fatalf("CheckFiles after removal: %v", err)
	}
	if cc := c.ClusterCapacity(); cc.MaxClients != 200 || cc.MaxBandwidthBps != 1e9 {
		t.Fatalf("capacity = %+v", cc)
	}
}

func TestEmptyFileKeepsDefaults(t *testing.T) {
	t.Parallel()
	c, err := LoadGateway(writeFile(t, "# nothing\n"), []string{"PEERGATE_CLUSTER_KEY=" + key})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.HTTP != ":8080" {
		t.Fatalf("listen.http = %q", c.Listen.HTTP)
	}
}

// Every error must carry the key (or variable) it is about.
func TestGatewayErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		desc string
		file string
		env  []string
		want string
	}{
		{"no key", "", nil, "cluster_key: required"},
		{"short key", "", []string{"PEERGATE_CLUSTER_KEY=short"}, "cluster_key: must be at least 16 bytes"},
		{"unknown key", "cluster_key: " + key + "\nlisten: {htp: ':1'}\n", nil, "field htp not found"},
		{"unknown top key", "clusterkey: x\n", nil, "field clusterkey not found"},
		{"bad yaml type", "http: {max_conns: many}\n", nil, "cannot unmarshal"},
		{"bad duration in file", "http: {retry_after: 2}\n", nil, "cannot unmarshal"},
		{"unknown env", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_LISTEN_HTPP=:1"}, "env PEERGATE_LISTEN_HTPP: unknown variable"},
		{"origin-only env on gateway", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_HEARTBEAT_TTL=3s"}, "PEERGATE_HEARTBEAT_TTL: unknown variable"},
		{"bad env int", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_HTTP_MAX_CONNS=x"}, "env PEERGATE_HTTP_MAX_CONNS (http.max_conns): not an integer"},
		{"bad env duration", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_HTTP_RETRY_AFTER=2"}, "env PEERGATE_HTTP_RETRY_AFTER (http.retry_after): not a duration"},
		{"bad env float", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_BALANCE_HYSTERESIS=lots"}, "(balance.hysteresis): not a number"},
		{"steering ttl short", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_HTTP_STEERING_TTL=500ms"}, "http.steering_ttl: must be whole seconds"},
		{"steering ttl fraction", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_HTTP_STEERING_TTL=1500ms"}, "http.steering_ttl: must be whole seconds"},
		{"steering bool", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_HTTP_STEERING=maybe"}, "(http.steering)"},
		{"redis empty", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_REDIS_URL="}, "redis.url: required"},
		{"redis scheme", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_REDIS_URL=http://x:1"}, "redis.url: "},
		{"redis no host", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_REDIS_URL=redis:///0"}, "redis.url: "},
		{"sentinel no master", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_REDIS_URL=redis+sentinel://a:1,b:2"}, "redis.url: "},
		{"cluster bad port", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_REDIS_URL=redis+cluster://a:1,b:99999"}, "redis.url: "},
		{"https without cert", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_LISTEN_HTTPS=:8443"}, "tls.cert_file: required with listen.https"},
		{"https without key", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_LISTEN_HTTPS=:8443", "PEERGATE_TLS_CERT_FILE=c.pem"}, "tls.key_file: required with listen.https"},
		{"https bad addr", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_LISTEN_HTTPS=nope"}, "listen.https:"},
		{"log level", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_LOG_LEVEL=loud"}, "log.level: must be"},
		{"admin token short", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_ADMIN_TOKEN=short"}, "admin.token: must be at least 16 bytes"},
		{"publish secret short", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_AUTH_PUBLISH_SECRET=short"}, "auth.publish_secret: must be at least 16 bytes"},
		{"play secret short", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_AUTH_PLAY_SECRET=short"}, "auth.play_secret: must be at least 16 bytes"},
		{"hook url scheme", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_AUTH_HTTP_URL=ftp://x/y"}, "auth.http_url: want an http"},
		{"hook timeout zero", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_AUTH_HTTP_TIMEOUT=0s"}, "auth.http_timeout: must be positive"},
		{"hook cache negative", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_AUTH_HTTP_CACHE=-1s"}, "auth.http_cache: must not be negative"},
		{"log format", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_LOG_FORMAT=xml"}, "log.format: must be"},
		{"listen.http empty", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_LISTEN_HTTP="}, "listen.http: required"},
		{"listen.http form", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_LISTEN_HTTP=8080"}, "listen.http: want [host]:port"},
		{"listen.rtsp port", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_LISTEN_RTSP=:70000"}, "listen.rtsp: port must be"},
		{"listen.rtmp port", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_LISTEN_RTMP=:x"}, "listen.rtmp: port must be"},
		{"listen.admin form", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_LISTEN_ADMIN=admin"}, "listen.admin: want [host]:port"},
		{"trusted proxies", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_HTTP_TRUSTED_PROXIES=10.0.0.0/8,nope"}, `http.trusted_proxies: "nope"`},
		{"sticky param", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_HTTP_STICKY_PARAM=a&b"}, "http.sticky_param: must be"},
		{"retry after", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_HTTP_RETRY_AFTER=100ms"}, "http.retry_after: must be at least 1s"},
		{"read header timeout", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_HTTP_READ_HEADER_TIMEOUT=0s"}, "http.read_header_timeout: must be greater than zero"},
		{"max conns", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_HTTP_MAX_CONNS=0"}, "http.max_conns: must be greater than zero"},
		{"hysteresis", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_BALANCE_HYSTERESIS=1"}, "balance.hysteresis: must be in [0, 1)"},
		{"hysteresis NaN", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_BALANCE_HYSTERESIS=NaN"}, "balance.hysteresis: must be in [0, 1)"},
		{"spill_at", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_BALANCE_SPILL_AT=1.5"}, "balance.spill_at: must be in [0, 1]"},
		{"spill_at NaN", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_BALANCE_SPILL_AT=NaN"}, "balance.spill_at: must be in [0, 1]"},
		{"anti entropy", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_REGISTRY_ANTI_ENTROPY=-1s"}, "registry.anti_entropy: must be greater than zero"},
		{"rtmp mode", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTMP_MODE=proxy"}, "rtmp.mode: must be auto, redirect or relay"},
		{"rtmp mode empty", "cluster_key: " + key + "\nrtmp: {mode: ''}\n", nil, "rtmp.mode: must be auto, redirect or relay"},
		{"rtmp handshake timeout", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTMP_HANDSHAKE_TIMEOUT=0s"}, "rtmp.handshake_timeout: must be greater than zero"},
		{"rtmp read timeout", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTMP_READ_TIMEOUT=-1s"}, "rtmp.read_timeout: must be greater than zero"},
		{"rtmp write timeout", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTMP_WRITE_TIMEOUT=0s"}, "rtmp.write_timeout: must be greater than zero"},
		{"rtmp max conns", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTMP_MAX_CONNS=0"}, "rtmp.max_conns: must be greater than zero"},
		{"http per ip", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_HTTP_MAX_CONNS_PER_IP=0"}, "http.max_conns_per_ip: must be greater than zero"},
		{"rtmp per ip", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTMP_MAX_CONNS_PER_IP=-1"}, "rtmp.max_conns_per_ip: must be greater than zero"},
		{"rtmp first request", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTMP_FIRST_REQUEST_TIMEOUT=0s"}, "rtmp.first_request_timeout: must be greater than zero"},
		{"rtsp first request", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTSP_FIRST_REQUEST_TIMEOUT=0s"}, "rtsp.first_request_timeout: must be greater than zero"},
		{"rtsp read", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTSP_READ_TIMEOUT=-1s"}, "rtsp.read_timeout: must be greater than zero"},
		{"rtsp write", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTSP_WRITE_TIMEOUT=0s"}, "rtsp.write_timeout: must be greater than zero"},
		{"rtsp dial", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTSP_DIAL_TIMEOUT=0s"}, "rtsp.dial_timeout: must be greater than zero"},
		{"rtsp max conns", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTSP_MAX_CONNS=0"}, "rtsp.max_conns: must be greater than zero"},
		{"rtsp per ip", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTSP_MAX_CONNS_PER_IP=0"}, "rtsp.max_conns_per_ip: must be greater than zero"},
		{"rtmp bad env duration", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_RTMP_READ_TIMEOUT=5"}, "(rtmp.read_timeout): not a duration"},
		{"rtmp unknown key", "cluster_key: " + key + "\nrtmp: {mdoe: relay}\n", nil, "field mdoe not found"},
		{"max staleness", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_REGISTRY_MAX_STALENESS=-1s"}, "registry.max_staleness: must be zero (off) or positive"},
		{"max staleness not a duration", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_REGISTRY_MAX_STALENESS=10"}, "registry.max_staleness"},
		{"max clock skew", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_REGISTRY_MAX_CLOCK_SKEW=-1ms"}, "registry.max_clock_skew: must be zero or positive"},
	}
	for _, ca := range cases {
		t.Run(ca.desc, func(t *testing.T) {
			t.Parallel()
			path := ""
			if ca.file != "" {
				path = writeFile(t, ca.file)
			}
			_, err := LoadGateway(path, ca.env)
			if err == nil || !strings.Contains(err.Error(), ca.want) {
				t.Fatalf("err = %v, want it to contain %q", err, ca.want)
			}
		})
	}
}

func TestOriginErrors(t *testing.T) {
	t.Parallel()
	base := []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_ID=o1"}
	cases := []struct {
		desc string
		file string
		env  []string
		want string
	}{
		{"no key", "", []string{"PEERGATE_ID=o1"}, "cluster_key: required"},
		{"bad id", "", []string{"PEERGATE_CLUSTER_KEY=" + key, "PEERGATE_ID=-bad id"}, `id: "-bad id" is not a valid origin id`},
		{"private blanks", "", []string{"PEERGATE_PRIVATE=a b"}, "private: must not contain blanks"},
		{"no public", "public: {http: '', rtsp: '', rtmp: ''}\n", nil, "public: at least one public URL is required"},
		{"public http scheme", "", []string{"PEERGATE_PUBLIC_HTTP=https://x"}, `public.http: "https://x": scheme must be "http"`},
		{"public https path", "", []string{"PEERGATE_PUBLIC_HTTPS=https://x/path"}, "public.https:"},
		{"public rtsp host", "", []string{"PEERGATE_PUBLIC_RTSP=rtsp://"}, "public.rtsp:"},
		{"public rtsps user", "", []string{"PEERGATE_PUBLIC_RTSPS=rtsps://u:p@x"}, "public.rtsps:"},
		{"public rtmp query", "", []string{"PEERGATE_PUBLIC_RTMP=rtmp://x?a=b"}, "public.rtmp:"},
		{"public rtmps scheme", "", []string{"PEERGATE_PUBLIC_RTMPS=rtmp://x"}, "public.rtmps:"},
		{"listen.http", "", []string{"PEERGATE_LISTEN_HTTP="}, "listen.http: required"},
		{"listen.admin", "", []string{"PEERGATE_LISTEN_ADMIN=:-1"}, "listen.admin: port must be"},
		{"interval", "", []string{"PEERGATE_HEARTBEAT_INTERVAL=0s"}, "heartbeat.interval: must be greater than zero"},
		{"ttl", "", []string{"PEERGATE_HEARTBEAT_TTL=1s"}, "heartbeat.ttl: must be greater than heartbeat.interval"},
		{"max clients", "", []string{"PEERGATE_CAPACITY_MAX_CLIENTS=-1"}, "capacity.max_clients: must not be negative"},
		{"max bandwidth", "", []string{"PEERGATE_CAPACITY_MAX_BANDWIDTH=-5"}, "capacity.max_bandwidth: must not be negative"},
		{"drain", "", []string{"PEERGATE_DRAIN_TIMEOUT=-1s"}, "drain_timeout: must not be negative"},
		{"drain reconnect scheme", "", []string{"PEERGATE_DRAIN_RECONNECT_URL=http://gw"}, "drain_reconnect_url: want an rtmp://"},
		{"drain reconnect path", "", []string{"PEERGATE_DRAIN_RECONNECT_URL=rtmp://gw/live"}, "drain_reconnect_url: want an rtmp://"},
		{"streams env", "", []string{"PEERGATE_STREAMS=demo"}, "env PEERGATE_STREAMS: streams can only be set in the config file"},
		{"gateway-only env on origin", "", []string{"PEERGATE_HTTP_MAX_CONNS=1"}, "PEERGATE_HTTP_MAX_CONNS: unknown variable"},
		{"stream name empty", "streams: [{name: ''}]\n", nil, "streams[0].name:"},
		{"stream name dots", "streams: [{name: a}, {name: ../x}]\n", nil, "streams[1].name:"},
		{"stream dup", "streams: [{name: a}, {name: a}]\n", nil, `streams[1].name: "a" is listed twice`},
		{"stream state", "streams: [{name: a, state: live}]\n", nil, "streams[0].state: must be running or ondemand"},
		{"stream source scheme", "streams: [{name: a, source: 'ftp://x/y'}]\n", nil, "streams[0].source:"},
		{"stream source host", "streams: [{name: a, source: 'rtsp:///y'}]\n", nil, "streams[0].source:"},
		{"stream unknown field", "streams: [{name: a, sauce: b}]\n", nil, "field sauce not found"},
		{"file source ondemand", "streams: [{name: a, state: ondemand, source: /srv/a.ts}]\n", nil, "streams[0].state: a file source is looped live"},
		{"url source running", "streams: [{name: a, state: running, source: 'rtmp://x/live/a'}]\n", nil, "streams[0].state: a URL source is pulled on demand"},
		{"hls variant", "", []string{"PEERGATE_HLS_VARIANT=dash"}, `hls.variant: must be mpegts, fmp4 or lowlatency, got "dash"`},
		{"hls segments", "", []string{"PEERGATE_HLS_SEGMENT_COUNT=2"}, "hls.segment_count: must be at least 3"},
		{"hls ll segments", "", []string{"PEERGATE_HLS_VARIANT=lowlatency", "PEERGATE_HLS_SEGMENT_COUNT=5"}, "hls.segment_count: must be at least 7 for variant lowlatency"},
		{"hls segments max", "", []string{"PEERGATE_HLS_SEGMENT_COUNT=1000"}, "hls.segment_count: must be at most 100"},
		{"hls segment duration", "", []string{"PEERGATE_HLS_SEGMENT_DURATION=0s"}, "hls.segment_duration: must be greater than zero"},
		{"hls part", "", []string{"PEERGATE_HLS_PART_DURATION=2s"}, "hls.part_duration: must not exceed hls.segment_duration"},
		{"hls first segment", "", []string{"PEERGATE_HLS_FIRST_SEGMENT_TIMEOUT=-1s"}, "hls.first_segment_timeout: must be greater than zero"},
		{"ondemand idle", "", []string{"PEERGATE_ONDEMAND_IDLE_TIMEOUT=0s"}, "ondemand.idle_timeout: must be greater than zero"},
		{"ondemand start", "", []string{"PEERGATE_ONDEMAND_START_TIMEOUT=0s"}, "ondemand.start_timeout: must be greater than zero"},
		{"ondemand retry", "", []string{"PEERGATE_ONDEMAND_RETRY_MAX=0s"}, "ondemand.retry_max: must be greater than zero"},
		{"limits conns", "", []string{"PEERGATE_LIMITS_MAX_CONNS=0"}, "limits.max_conns: must be greater than zero"},
		{"limits per ip", "", []string{"PEERGATE_LIMITS_MAX_CONNS_PER_IP=0"}, "limits.max_conns_per_ip: must be greater than zero"},
		{"limits first byte", "", []string{"PEERGATE_LIMITS_FIRST_BYTE_TIMEOUT=0s"}, "limits.first_byte_timeout: must be greater than zero"},
		{"limits viewers", "", []string{"PEERGATE_LIMITS_MAX_VIEWERS=-1"}, "limits.max_viewers: must be greater than zero"},
		{"limits handshake", "", []string{"PEERGATE_LIMITS_HANDSHAKE_TIMEOUT=0s"}, "limits.handshake_timeout: must be greater than zero"},
		{"limits read", "", []string{"PEERGATE_LIMITS_READ_TIMEOUT=0s"}, "limits.read_timeout: must be greater than zero"},
		{"limits write", "", []string{"PEERGATE_LIMITS_WRITE_TIMEOUT=0s"}, "limits.write_timeout: must be greater than zero"},
		{"rtsp udp odd", "", []string{"PEERGATE_LISTEN_RTSP_UDP=:8001"}, "listen.rtsp_udp: the RTP port must be even"},
		{"rtsp udp bad", "", []string{"PEERGATE_LISTEN_RTSP_UDP=8000"}, "listen.rtsp_udp: want [host]:port"},
		{"rtsp udp without rtsp", "", []string{"PEERGATE_LISTEN_RTSP=", "PEERGATE_LISTEN_RTSP_UDP=:8000"}, "listen.rtsp_udp: needs listen.rtsp"},
	}
	for _, ca := range cases {
		t.Run(ca.desc, func(t *testing.T) {
			t.Parallel()
			path := ""
			if ca.file != "" {
				path = writeFile(t, ca.file)
			}
			env := ca.env
			if ca.desc != "no key" && ca.desc != "bad id" {
				env = append(append([]string(nil), base...), ca.env...)
			}
			_, err := LoadOrigin(path, env)
			if err == nil || !strings.Contains(err.Error(), ca.want) {
				t.Fatalf("err = %v, want it to contain %q", err, ca.want)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	t.Parallel()
	_, err := LoadGateway(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("err = %v", err)
	}
}

// Every scalar and list key can be overridden, and the names follow the YAML paths.
func TestEnvNamesCoverKeys(t *testing.T) {
	t.Parallel()
	g := EnvNames(&Gateway{})
	for env, path := range map[string]string{
		"PEERGATE_CLUSTER_KEY": "cluster_key", "PEERGATE_REDIS_URL": "redis.url", "PEERGATE_LISTEN_HTTP": "listen.http",
		"PEERGATE_HTTP_TRUSTED_PROXIES": "http.trusted_proxies", "PEERGATE_LOG_FORMAT": "log.format",
		"PEERGATE_REGISTRY_ANTI_ENTROPY": "registry.anti_entropy", "PEERGATE_LISTEN_HTTPS": "listen.https",
		"PEERGATE_TLS_CERT_FILE": "tls.cert_file", "PEERGATE_TLS_KEY_FILE": "tls.key_file",
		"PEERGATE_RTMP_MODE": "rtmp.mode", "PEERGATE_RTMP_FOLLOW_FLASHVER": "rtmp.follow_flashver",
		"PEERGATE_RTMP_HANDSHAKE_TIMEOUT": "rtmp.handshake_timeout", "PEERGATE_RTMP_READ_TIMEOUT": "rtmp.read_timeout",
		"PEERGATE_RTMP_WRITE_TIMEOUT": "rtmp.write_timeout", "PEERGATE_RTMP_MAX_CONNS": "rtmp.max_conns",
		"PEERGATE_REGISTRY_MAX_STALENESS": "registry.max_staleness", "PEERGATE_REGISTRY_MAX_CLOCK_SKEW": "registry.max_clock_skew",
		"PEERGATE_ADMIN_TOKEN": "admin.token", "PEERGATE_AUTH_PUBLISH_SECRET": "auth.publish_secret",
		"PEERGATE_AUTH_PLAY_SECRET": "auth.play_secret", "PEERGATE_AUTH_HTTP_URL": "auth.http_url",
		"PEERGATE_AUTH_HTTP_TIMEOUT": "auth.http_timeout", "PEERGATE_AUTH_HTTP_CACHE": "auth.http_cache",
		"PEERGATE_HTTP_MAX_CONNS_PER_IP": "http.max_conns_per_ip", "PEERGATE_RTMP_MAX_CONNS_PER_IP": "rtmp.max_conns_per_ip",
		"PEERGATE_RTMP_FIRST_REQUEST_TIMEOUT": "rtmp.first_request_timeout", "PEERGATE_RTSP_FIRST_REQUEST_TIMEOUT": "rtsp.first_request_timeout",
		"PEERGATE_RTSP_READ_TIMEOUT": "rtsp.read_timeout", "PEERGATE_RTSP_WRITE_TIMEOUT": "rtsp.write_timeout",
		"PEERGATE_RTSP_DIAL_TIMEOUT": "rtsp.dial_timeout", "PEERGATE_RTSP_MAX_CONNS": "rtsp.max_conns",
		"PEERGATE_RTSP_MAX_CONNS_PER_IP": "rtsp.max_conns_per_ip", "PEERGATE_BALANCE_SPILL_AT": "balance.spill_at",
		"PEERGATE_HTTP_STEERING": "http.steering", "PEERGATE_HTTP_STEERING_TTL": "http.steering_ttl",
	} {
		if g[env] != path {
			t.Errorf("gateway %s = %q, want %q", env, g[env], path)
		}
	}
	if len(g) != 45 {
		t.Errorf("gateway has %d env keys: %v", len(g), g)
	}
	o := EnvNames(&Origin{})
	for env, path := range map[string]string{
		"PEERGATE_PUBLIC_HTTP": "public.http", "PEERGATE_HEARTBEAT_TTL": "heartbeat.ttl",
		"PEERGATE_CAPACITY_MAX_CLIENTS": "capacity.max_clients", "PEERGATE_DRAIN_TIMEOUT": "drain_timeout", "PEERGATE_ID": "id",
		"PEERGATE_DRAIN_RECONNECT_URL": "drain_reconnect_url",
		"PEERGATE_HLS_VARIANT":         "hls.variant", "PEERGATE_ONDEMAND_IDLE_TIMEOUT": "ondemand.idle_timeout",
		"PEERGATE_LIMITS_MAX_CONNS": "limits.max_conns", "PEERGATE_LISTEN_RTSP_UDP": "listen.rtsp_udp",
		"PEERGATE_LIMITS_MAX_CONNS_PER_IP": "limits.max_conns_per_ip", "PEERGATE_LIMITS_FIRST_BYTE_TIMEOUT": "limits.first_byte_timeout",
		"PEERGATE_ADMIN_TOKEN": "admin.token", "PEERGATE_AUTH_PUBLISH_SECRET": "auth.publish_secret",
		"PEERGATE_PUBLISH_ALLOW_DUPLICATES": "publish.allow_duplicates",
	} {
		if o[env] != path {
			t.Errorf("origin %s = %q, want %q", env, o[env], path)
		}
	}
	if _, ok := o["PEERGATE_STREAMS"]; ok {
		t.Error("streams must be file-only")
	}
	if _, ok := g["PEERGATE_LISTEN_RTSP_UDP"]; ok {
		t.Error("listen.rtsp_udp is an origin key only")
	}
	if _, ok := g["PEERGATE_PUBLISH_ALLOW_DUPLICATES"]; ok {
		t.Error("publish.allow_duplicates is an origin key only")
	}
}

func FuzzEnvValue(f *testing.F) {
	for _, s := range []string{"1s", "", "a,b, c", "0.1", "-3", "true", "x"} {
		f.Add("PEERGATE_HTTP_TRUSTED_PROXIES", s)
		f.Add("PEERGATE_HTTP_RETRY_AFTER", s)
		f.Add("PEERGATE_BALANCE_HYSTERESIS", s)
	}
	f.Fuzz(func(t *testing.T, name, val string) {
		// Whatever arrives, loading returns a config or an error; it never panics.
		_, _ = LoadGateway("", []string{"PEERGATE_CLUSTER_KEY=" + key, name + "=" + val})
	})
}

func FuzzDecodeOrigin(f *testing.F) {
	f.Add([]byte("cluster_key: " + key + "\nid: o1\nstreams: [{name: demo}]\n"))
	f.Add([]byte("heartbeat: {interval: 500ms, ttl: 2s}\n"))
	f.Add([]byte("public: {http: 'http://x:1'}\n"))
	f.Add([]byte("listen: {htp: ':1'}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := DefaultOrigin()
		if err := decodeYAML(c, "fuzz", b); err != nil {
			return
		}
		_ = c.Validate()
	})
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	l := NewLogger(&b, Log{Level: "warn", Format: "json"})
	l.Info("hidden")
	l.Warn("listening", "addr", "127.0.0.1:1")
	if got := b.String(); strings.Contains(got, "hidden") || !strings.Contains(got, `"msg":"listening","addr":"127.0.0.1:1"`) {
		t.Fatalf("log = %q", got)
	}
	b.Reset()
	NewLogger(&b, Log{Level: "debug", Format: "text"}).Debug("x", "k", "v")
	if !strings.Contains(b.String(), "level=DEBUG msg=x k=v") {
		t.Fatalf("log = %q", b.String())
	}
}

// The shipped example, demo and compose configs must load as they are (the production
// examples once a publish secret is in the environment, and not before).
func TestShippedConfigs(t *testing.T) {
	t.Parallel()
	env := []string{"PEERGATE_CLUSTER_KEY=" + key}
	for _, p := range []string{"../../deploy/gateway.yaml", "../../deploy/origin.yaml"} {
		var err error
		if strings.Contains(p, "gateway") {
			_, err = LoadGateway(p, env)
		} else {
			_, err = LoadOrigin(p, append(env, "PEERGATE_ID=o1"))
		}
		if err == nil || !strings.Contains(err.Error(), "auth.require_publish") {
			t.Errorf("%s without a publish secret: %v, want an error naming auth.require_publish", p, err)
		}
	}
	env = append(env, "PEERGATE_AUTH_PUBLISH_SECRET=0123456789abcdef-publish")
	for _, p := range []string{"../../deploy/gateway.yaml", "../../deploy/demo/gateway.yaml", "../../deploy/compose/gateway.yaml"} {
		if _, err := LoadGateway(p, env); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	wantStreams := map[string]string{
		"../../deploy/origin.yaml": "", "../../deploy/demo/origin1.yaml": "demo", "../../deploy/demo/origin2.yaml": "live/demo2",
		"../../deploy/compose/origin1.yaml": "demo", "../../deploy/compose/origin2.yaml": "live/demo2",
	}
	for p, stream := range wantStreams {
		c, err := LoadOrigin(p, append(env, "PEERGATE_ID=o1"))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		got := ""
		if len(c.Streams) > 0 {
			got = c.Streams[0].Name
		}
		// Demo configs name the clip relative to the repository root (make demo runs there).
		if strings.Contains(p, "/demo/") {
			for _, s := range c.SourceStreams(SourceFile) {
				if _, err := os.Stat(filepath.Join("../..", s.FilePath())); err != nil {
					t.Errorf("%s: %s: %v", p, s.Name, err)
				}
			}
		}
		if got != stream {
			t.Errorf("%s: first stream %q, want %q", p, got, stream)
		}
	}
}

// TestClockSkewAndDuplicates: registry.max_clock_skew defaults to 1s and 0 means none (not
// the default); publish.allow_duplicates is off by default and set from file or environment.
func TestClockSkewAndDuplicates(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		file string
		env  []string
		want time.Duration
	}{
		{"", nil, time.Second},
		{"registry: {max_clock_skew: 0s}\n", nil, 0},
		{"", []string{"PEERGATE_REGISTRY_MAX_CLOCK_SKEW=0"}, 0},
		{"registry: {max_clock_skew: 250ms}\n", nil, 250 * time.Millisecond},
	} {
		p := writeFile(t, "cluster_key: "+key+"\n"+c.file)
		g, err := LoadGateway(p, c.env)
		if err != nil {
			t.Fatalf("%q %v: %v", c.file, c.env, err)
		}
		if g.Registry.MaxClockSkew != c.want {
			t.Errorf("%q %v: max_clock_skew %s, want %s", c.file, c.env, g.Registry.MaxClockSkew, c.want)
		}
	}
	for _, c := range []struct {
		file string
		env  []string
		want bool
	}{
		{"", nil, false},
		{"publish: {allow_duplicates: true}\n", nil, true},
		{"", []string{"PEERGATE_PUBLISH_ALLOW_DUPLICATES=true"}, true},
	} {
		o, err := LoadOrigin(writeFile(t, "cluster_key: "+key+"\nid: o1\n"+c.file), c.env)
		if err != nil {
			t.Fatalf("%q %v: %v", c.file, c.env, err)
		}
		if o.Publish.AllowDuplicates != c.want {
			t.Errorf("%q %v: allow_duplicates %v, want %v", c.file, c.env, o.Publish.AllowDuplicates, c.want)
		}
	}
	if _, err := LoadGateway(writeFile(t, "cluster_key: "+key+"\npublish: {allow_duplicates: true}\n"), nil); err == nil {
		t.Error("the gateway accepted the origin key publish.allow_duplicates")
	}
}

// The production examples in deploy/ show every key (an operator reads them as the reference
// at hand), with admin listeners on loopback and publishing closed.
func TestExampleConfigsListEveryKey(t *testing.T) {
	t.Parallel()
	for path, keys := range map[string]map[string]string{
		"../../deploy/gateway.yaml": EnvNames(&Gateway{}),
		"../../deploy/origin.yaml":  EnvNames(&Origin{}),
	} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var missing []string
		for _, key := range keys {
			var node any = doc
			for _, part := range strings.Split(key, ".") {
				m, ok := node.(map[string]any)
				if !ok {
					node = nil
					break
				}
				node, ok = m[part]
				if !ok {
					node = nil
					break
				}
			}
			if node == nil && !strings.HasSuffix(key, "cluster_key") && key != "id" {
				missing = append(missing, key)
			}
		}
		slices.Sort(missing)
		if len(missing) > 0 {
			t.Errorf("%s lacks %v", path, missing)
		}
		listen := doc["listen"].(map[string]any)
		if a, _ := listen["admin"].(string); !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("%s: listen.admin %q, want loopback for bare-metal installs", path, a)
		}
		auth := doc["auth"].(map[string]any)
		if auth["require_publish"] != true {
			t.Errorf("%s: auth.require_publish must be true in the production example", path)
		}
	}
}
