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
}

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
	// MaxConns bounds concurrent connections. It defaults to 10000.
	MaxConns int `yaml:"max_conns"`
}

// Balance tunes origin choice.
type Balance struct {
	// Hysteresis is the relative load difference below which the sticky first choice is kept. It defaults to 0.10.
	Hysteresis float64 `yaml:"hysteresis"`
}

// RegistryOpts tunes the gateway's registry watcher.
type RegistryOpts struct {
	// AntiEntropy is the period of full re-reads. It defaults to 30s.
	AntiEntropy time.Duration `yaml:"anti_entropy"`
}

// Gateway is the gateway binary's configuration.
type Gateway struct {
	Common   `yaml:",inline"`
	Listen   Listen       `yaml:"listen"`
	HTTP     GatewayHTTP  `yaml:"http"`
	Balance  Balance      `yaml:"balance"`
	Registry RegistryOpts `yaml:"registry"`
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

// Stream is one entry of an origin's static stream list.
type Stream struct {
	Name   string `yaml:"name"`
	State  string `yaml:"state"`  // running | ondemand; defaults to running
	Source string `yaml:"source"` // optional: a file path or an rtsp/rtmp/http(s) URL
}

// Origin is the origin binary's configuration.
type Origin struct {
	Common       `yaml:",inline"`
	ID           string        `yaml:"id"`      // defaults to the hostname
	Private      string        `yaml:"private"` // informational private address
	Public       Public        `yaml:"public"`
	Listen       Listen        `yaml:"listen"`
	Heartbeat    Heartbeat     `yaml:"heartbeat"`
	Capacity     Capacity      `yaml:"capacity"`
	DrainTimeout time.Duration `yaml:"drain_timeout"` // defaults to 30s
	Streams      []Stream      `yaml:"streams"`
}

func defaultCommon() Common {
	return Common{
		Redis: Redis{URL: "redis://127.0.0.1:6379/0"},
		Log:   Log{Level: "info", Format: "text"},
	}
}

// DefaultGateway returns the gateway defaults (design.md section 7 ports).
func DefaultGateway() *Gateway {
	return &Gateway{
		Common: defaultCommon(),
		Listen: Listen{HTTP: ":8080", RTSP: ":8554", RTMP: ":1935", Admin: ":9080"},
		HTTP: GatewayHTTP{
			RetryAfter:        2 * time.Second,
			ReadHeaderTimeout: 5 * time.Second,
			MaxConns:          10000,
		},
		Balance:  Balance{Hysteresis: 0.10},
		Registry: RegistryOpts{AntiEntropy: 30 * time.Second},
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
		Listen:       Listen{HTTP: ":8081", RTSP: ":8555", RTMP: ":1936", Admin: ":9081"},
		Heartbeat:    Heartbeat{Interval: time.Second, TTL: 3 * time.Second},
		DrainTimeout: 30 * time.Second,
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
