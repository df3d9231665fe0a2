// Package config loads the gateway and origin settings: defaults, then a YAML file, then PEERGATE_* environment variables, then validation.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable that overrides a key.
const EnvPrefix = "PEERGATE_"

// MinClusterKeyLen is the shortest cluster_key accepted: the key signs every registry record.
const MinClusterKeyLen = 16

// maxFileSize bounds the config file we are willing to read.
const maxFileSize = 1 << 20

// Redis holds the registry connection.
type Redis struct {
	// URL: redis://, rediss://, redis+sentinel://h1:p1,h2:p2/master or redis+cluster://h1:p1,h2:p2.
	// It defaults to redis://127.0.0.1:6379/0.
	URL string `yaml:"url"`
}

// Log holds logger settings.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error; defaults to info
	Format string `yaml:"format"` // text | json; defaults to text
}

// Common are the keys both binaries share.
type Common struct {
	ClusterKey string `yaml:"cluster_key"` // required, at least 16 bytes
	Redis      Redis  `yaml:"redis"`
	Log        Log    `yaml:"log"`
	Admin      Admin  `yaml:"admin"`
	Auth       Auth   `yaml:"auth"`
}

// Admin holds the admin API's credential.
type Admin struct {
	// Token is the bearer token that state-changing admin endpoints require
	// (Authorization: Bearer TOKEN). Empty disables those endpoints; health, readiness and
	// metrics stay open. At least MinSecretLen bytes when set.
	Token string `yaml:"token"`
}

// Auth holds publisher authorization.
type Auth struct {
	// PublishSecret signs publish keys (see shared/pubauth); the same on every gateway and
	// origin. Empty leaves publishing open to anyone. At least MinSecretLen bytes when set.
	PublishSecret string `yaml:"publish_secret"`
	// PlaySecret signs play tokens (see shared/pubauth); the same on every gateway and
	// origin. Empty leaves play open to anyone. At least MinSecretLen bytes when set.
	PlaySecret string `yaml:"play_secret"`
	// HTTPURL, when set, is POSTed every publish (JSON: action, protocol, name, client,
	// query); a 2xx answer allows it, anything else refuses. An http:// or https:// URL.
	HTTPURL string `yaml:"http_url"`
	// HTTPTimeout bounds one call to HTTPURL; a call that runs out refuses. Default 2s.
	HTTPTimeout time.Duration `yaml:"http_timeout"`
	// HTTPCache is how long a decision of HTTPURL is reused, per (action, protocol, name,
	// query, client). Default 5s; 0 disables the cache.
	HTTPCache time.Duration `yaml:"http_cache"`
	// RequirePublish refuses to start with publishing open: true needs PublishSecret or
	// HTTPURL. The production examples in deploy/ set it; the demos leave it false.
	RequirePublish bool `yaml:"require_publish"`
}

// MinSecretLen is the shortest admin.token or auth.publish_secret accepted.
const MinSecretLen = 16

// Listen holds listener addresses; an empty address disables that listener (except listen.http).
type Listen struct {
	HTTP  string `yaml:"http"`
	RTSP  string `yaml:"rtsp"`
	RTMP  string `yaml:"rtmp"`
	Admin string `yaml:"admin"`
}

// GatewayHTTP tunes the gateway's HTTP redirect listener.
type GatewayHTTP struct {
	// TrustedProxies are CIDRs (or bare IPs) whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// StickyParam names a query parameter whose value pins a viewer instead of its address; empty uses the address.
	StickyParam string `yaml:"sticky_param"`
	// RetryAfter is sent with 503 when no origin is eligible. It defaults to 2s.
	RetryAfter time.Duration `yaml:"retry_after"`
	// ReadHeaderTimeout bounds request header reading. It defaults to 5s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// MaxConns bounds concurrent connections; more are closed at once. It defaults to 10000.
	MaxConns int `yaml:"max_conns"`
	// MaxConnsPerIP bounds concurrent connections from one client address. It defaults to 256.
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// Steering answers an HLS entry (/NAME/index.m3u8) with a multivariant playlist listing
	// every copy of NAME as a pathway, plus HLS content steering (README, "HLS content
	// steering"), instead of a 302. It defaults to false.
	Steering bool `yaml:"steering"`
	// SteeringTTL is the TTL of a steering answer: how often players ask again. It defaults to 5s.
	SteeringTTL time.Duration `yaml:"steering_ttl"`
}

// GatewayRTSP tunes the gateway's RTSP listener (listen.rtsp).
type GatewayRTSP struct {
	// FirstRequestTimeout bounds accept to the end of the first request. It defaults to 5s.
	FirstRequestTimeout time.Duration `yaml:"first_request_timeout"`
	// ReadTimeout bounds each later request and a relayed publisher's silence. It defaults to 10s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds each write to either side. It defaults to 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// DialTimeout bounds connecting to an origin for a relay. It defaults to 5s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// MaxConns bounds concurrent RTSP client connections. It defaults to 10000.
	MaxConns int `yaml:"max_conns"`
	// MaxConnsPerIP bounds concurrent connections from one client address. It defaults to 256.
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
}

// GatewayRTMP tunes the gateway's RTMP listener (listen.rtmp).
type GatewayRTMP struct {
	// Mode is auto (redirect the clients known to follow, relay the rest), redirect or relay.
	// It defaults to auto.
	Mode string `yaml:"mode"`
	// FollowFlashVer lists flashVer patterns of clients that follow the SRS-style redirect in
	// auto mode ('*' matches any run of characters, the pattern matches the whole flashVer).
	// Clients that set the reconnect bit of capsEx are redirected whatever it says. It defaults to none.
	FollowFlashVer []string `yaml:"follow_flashver"`
	// FirstRequestTimeout bounds the RTMP handshake (accept to C2). It defaults to 5s.
	FirstRequestTimeout time.Duration `yaml:"first_request_timeout"`
	// HandshakeTimeout bounds accept to play/publish, and the relay's setup with the origin. It defaults to 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// ReadTimeout bounds the wait for media from the sending side while relaying. It defaults to 10s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds each write to either side; a client that stops reading is cut. It defaults to 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxConns bounds concurrent RTMP client connections. It defaults to 10000.
	MaxConns int `yaml:"max_conns"`
	// MaxConnsPerIP bounds concurrent connections from one client address. It defaults to 256.
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
}

// Balance tunes origin choice.
type Balance struct {
	// Hysteresis is the relative load difference below which the sticky first choice is kept. It defaults to 0.10.
	Hysteresis float64 `yaml:"hysteresis"`
	// SpillAt is the utilization (0..1) from which a stream's new viewers spill over to relay
	// origins that pull it from the cluster. It defaults to 0.8; 0 turns spilling off.
	SpillAt float64 `yaml:"spill_at"`
}

// RegistryOpts tunes the gateway's registry watcher.
type RegistryOpts struct {
	// AntiEntropy is the period of full re-reads. It defaults to 30s.
	AntiEntropy time.Duration `yaml:"anti_entropy"`
	// MaxStaleness makes /readyz answer 503 once the served registry copy has gone unconfirmed
	// by Redis for longer than this. It defaults to 0 (off: a degraded copy stays ready).
	MaxStaleness time.Duration `yaml:"max_staleness"`
	// MaxClockSkew is how far an origin's clock may be off this gateway's: a signed record or
	// heartbeat is trusted until its issue time + the origin's TTL + MaxClockSkew, and dropped
	// as a replay after that. It defaults to 1s; 0 means none.
	MaxClockSkew time.Duration `yaml:"max_clock_skew"`
}

// Gateway is the gateway binary's configuration.
type Gateway struct {
	Common   `yaml:",inline"`
	Listen   GatewayListen `yaml:"listen"`
	TLS      TLS           `yaml:"tls"`
	HTTP     GatewayHTTP   `yaml:"http"`
	RTMP     GatewayRTMP   `yaml:"rtmp"`
	RTSP     GatewayRTSP   `yaml:"rtsp"`
	Balance  Balance       `yaml:"balance"`
	Registry RegistryOpts  `yaml:"registry"`
}

// GatewayListen adds the gateway's HTTPS redirect listener to the listeners.
type GatewayListen struct {
	Listen `yaml:",inline"`
	// HTTPS is the TLS redirect listener's address; it needs tls.cert_file and tls.key_file.
	// It defaults to "" (off).
	HTTPS string `yaml:"https"`
}

// TLS names the gateway's certificate for listen.https (PEM files, read at start).
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Public holds an origin's public base URLs (Flussonic's `public` option); empty means not offered.
type Public struct {
	HTTP  string `yaml:"http"`
	HTTPS string `yaml:"https"`
	RTSP  string `yaml:"rtsp"`
	RTSPS string `yaml:"rtsps"`
	RTMP  string `yaml:"rtmp"`
	RTMPS string `yaml:"rtmps"`
}

// Publish is the origin's publish policy.
type Publish struct {
	// AllowDuplicates lets a NAME be published on this origin while another origin of the
	// cluster publishes it too. It defaults to false: such a publisher is refused.
	AllowDuplicates bool `yaml:"allow_duplicates"`
}

// Heartbeat times the origin's registry record.
type Heartbeat struct {
	Interval time.Duration `yaml:"interval"` // defaults to 1s
	TTL      time.Duration `yaml:"ttl"`      // defaults to 3s; must exceed interval
}

// Capacity limits an origin; zero means unlimited.
type Capacity struct {
	MaxClients   int64 `yaml:"max_clients"`
	MaxBandwidth int64 `yaml:"max_bandwidth"` // bits per second
}

// Stream is one entry of an origin's stream list.
type Stream struct {
	Name string `yaml:"name"`
	// State is running or ondemand. It defaults to running, or to ondemand for a URL source;
	// a file source must be running and a URL source ondemand.
	State string `yaml:"state"`
	// Source is empty (a static announcement), a file path (looped as a live stream from the
	// start) or an rtsp(s)://, rtmp(s)://, http(s)://...m3u8 URL (pulled on demand).
	Source string `yaml:"source"`
}

// Source kinds of a Stream.
const (
	SourceNone = ""     // a static announcement: the name is advertised, nothing is ingested
	SourceFile = "file" // a looped MPEG-TS or MP4 file
	SourcePull = "pull" // an on-demand pull from a URL
)

// OriginListen adds the origin's RTSP UDP port pair to the listeners.
type OriginListen struct {
	Listen `yaml:",inline"`
	// RTSPUDP is the RTSP RTP/UDP address (host:even-port, RTCP on port+1; port 0 picks a
	// free pair); empty means RTSP over TCP only. It defaults to "".
	RTSPUDP string `yaml:"rtsp_udp"`
}

// HLS tunes the origin's HLS muxers.
type HLS struct {
	Variant             string        `yaml:"variant"`               // mpegts | fmp4 | lowlatency; defaults to mpegts
	SegmentCount        int           `yaml:"segment_count"`         // segments in the playlist; defaults to 7
	SegmentDuration     time.Duration `yaml:"segment_duration"`      // minimum segment length (cut at key frames); defaults to 1s
	PartDuration        time.Duration `yaml:"part_duration"`         // LL-HLS part length; defaults to 200ms
	FirstSegmentTimeout time.Duration `yaml:"first_segment_timeout"` // how long a first request waits for a segment; defaults to 10s
}

// OnDemand tunes pulls of URL sources.
type OnDemand struct {
	IdleTimeout  time.Duration `yaml:"idle_timeout"`  // stop a pull this long after its last viewer; defaults to 30s
	StartTimeout time.Duration `yaml:"start_timeout"` // how long a first viewer waits for the source; defaults to 10s
	RetryMax     time.Duration `yaml:"retry_max"`     // cap of the doubling pause between retries; defaults to 30s
}

// Limits bound every media listener (HTTP, RTSP, RTMP) of an origin.
type Limits struct {
	MaxConns         int           `yaml:"max_conns"`          // concurrent connections per listener; defaults to 4096
	MaxConnsPerIP    int           `yaml:"max_conns_per_ip"`   // concurrent connections per listener from one address; defaults to 1024
	FirstByteTimeout time.Duration `yaml:"first_byte_timeout"` // a connection silent this long after accept is closed; defaults to 5s
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`  // RTMP handshake to play/publish, HTTP request headers; defaults to 10s
	ReadTimeout      time.Duration `yaml:"read_timeout"`       // a silent publisher or a slow request body is cut off; defaults to 10s
	WriteTimeout     time.Duration `yaml:"write_timeout"`      // a player that does not take data is cut off; defaults to 10s
	MaxViewers       int           `yaml:"max_viewers"`        // readers per stream (all protocols); defaults to 4096
}

// Origin is the origin binary's configuration.
type Origin struct {
	Common       `yaml:",inline"`
	ID           string        `yaml:"id"`      // defaults to the hostname
	Private      string        `yaml:"private"` // host gateways dial for relays (public URL's port kept); "" means the public URLs
	Public       Public        `yaml:"public"`
	Listen       OriginListen  `yaml:"listen"`
	Heartbeat    Heartbeat     `yaml:"heartbeat"`
	Publish      Publish       `yaml:"publish"`
	Capacity     Capacity      `yaml:"capacity"`
	DrainTimeout time.Duration `yaml:"drain_timeout"` // defaults to 30s
	// DrainReconnectURL is the gateway RTMP base URL ("rtmp://gw.example.com") a draining origin
	// sends RTMP players that follow ReconnectRequest to; "" lets them reconnect to the URL they used.
	DrainReconnectURL string   `yaml:"drain_reconnect_url"`
	HLS               HLS      `yaml:"hls"`
	OnDemand          OnDemand `yaml:"ondemand"`
	Limits            Limits   `yaml:"limits"`
	Streams           []Stream `yaml:"streams"`
}

func defaultCommon() Common {
	return Common{
		Redis: Redis{URL: "redis://127.0.0.1:6379/0"},
		Log:   Log{Level: "info", Format: "text"},
		Auth:  Auth{HTTPTimeout: 2 * time.Second, HTTPCache: 5 * time.Second},
	}
}

// DefaultGateway returns the gateway defaults (design.md section 7 ports).
func DefaultGateway() *Gateway {
	return &Gateway{
		Common: defaultCommon(),
		Listen: GatewayListen{Listen: Listen{HTTP: ":8080", RTSP: ":8554", RTMP: ":1935", Admin: ":9080"}},
		HTTP: GatewayHTTP{
			RetryAfter:        2 * time.Second,
			ReadHeaderTimeout: 5 * time.Second,
			MaxConns:          10000,
			MaxConnsPerIP:     256,
			SteeringTTL:       5 * time.Second,
		},
		RTMP: GatewayRTMP{
			Mode:                "auto",
			FirstRequestTimeout: 5 * time.Second,
			HandshakeTimeout:    10 * time.Second,
			ReadTimeout:         10 * time.Second,
			WriteTimeout:        10 * time.Second,
			MaxConns:            10000,
			MaxConnsPerIP:       256,
		},
		RTSP: GatewayRTSP{
			FirstRequestTimeout: 5 * time.Second,
			ReadTimeout:         10 * time.Second,
			WriteTimeout:        10 * time.Second,
			DialTimeout:         5 * time.Second,
			MaxConns:            10000,
			MaxConnsPerIP:       256,
		},
		Balance:  Balance{Hysteresis: 0.10, SpillAt: 0.8},
		Registry: RegistryOpts{AntiEntropy: 30 * time.Second, MaxClockSkew: time.Second},
	}
}

// DefaultOrigin returns the origin defaults (origin 1 of design.md section 7); ID is filled from the hostname at load.
func DefaultOrigin() *Origin {
	return &Origin{
		Common: defaultCommon(),
		Public: Public{
			HTTP: "http://127.0.0.1:8081",
			RTSP: "rtsp://127.0.0.1:8555",
			RTMP: "rtmp://127.0.0.1:1936",
		},
		Listen:       OriginListen{Listen: Listen{HTTP: ":8081", RTSP: ":8555", RTMP: ":1936", Admin: ":9081"}},
		Heartbeat:    Heartbeat{Interval: time.Second, TTL: 3 * time.Second},
		DrainTimeout: 30 * time.Second,
		HLS: HLS{
			Variant:             "mpegts",
			SegmentCount:        7,
			SegmentDuration:     time.Second,
			PartDuration:        200 * time.Millisecond,
			FirstSegmentTimeout: 10 * time.Second,
		},
		OnDemand: OnDemand{IdleTimeout: 30 * time.Second, StartTimeout: 10 * time.Second, RetryMax: 30 * time.Second},
		Limits: Limits{
			MaxConns:         4096,
			MaxConnsPerIP:    1024,
			FirstByteTimeout: 5 * time.Second,
			HandshakeTimeout: 10 * time.Second,
			ReadTimeout:      10 * time.Second,
			WriteTimeout:     10 * time.Second,
			MaxViewers:       4096,
		},
	}
}

// LoadGateway builds the gateway configuration from defaults, the file at path (if not empty) and env (os.Environ() form).
func LoadGateway(path string, env []string) (*Gateway, error) {
	c := DefaultGateway()
	if err := load(c, path, env); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// LoadOrigin builds the origin configuration from defaults, the file at path (if not empty) and env (os.Environ() form).
func LoadOrigin(path string, env []string) (*Origin, error) {
	c := DefaultOrigin()
	if err := load(c, path, env); err != nil {
		return nil, err
	}
	if c.ID == "" {
		// The hostname is a good default in containers and on hosts alike; Validate says when it does not fit.
		if h, err := os.Hostname(); err == nil {
			c.ID = h
		}
	}
	for i := range c.Streams {
		if c.Streams[i].State == "" {
			c.Streams[i].State = "running"
			if c.Streams[i].Kind() == SourcePull {
				c.Streams[i].State = "ondemand"
			}
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func load(dst any, path string, env []string) error {
	if path != "" {
		if err := loadFile(dst, path); err != nil {
			return err
		}
	}
	return applyEnv(dst, env)
}

func loadFile(dst any, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return fmt.Errorf("config %s: larger than %d bytes", path, maxFileSize)
	}
	return decodeYAML(dst, path, b)
}

func decodeYAML(dst any, name string, b []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file keeps the defaults
		}
		return fmt.Errorf("config %s: %w", name, err)
	}
	return nil
}
