// Package cluster holds the data model shared by origins, the registry and gateways.
package cluster

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Origin states.
const (
	StateUp       = "up"
	StateDraining = "draining"
)

// Stream states.
const (
	StreamRunning  = "running"
	StreamOnDemand = "ondemand"
)

// Schemes an origin may publish a public URL for.
var Schemes = []string{"http", "https", "rtsp", "rtsps", "rtmp", "rtmps"}

// Public holds an origin's public base URL per scheme, e.g. {"http": "http://edge1.example.com:8081"}.
// A base URL is scheme://host[:port] with no path, query or fragment.
type Public map[string]string

// Load is what an origin reports about itself on every heartbeat.
type Load struct {
	Clients   int64   `json:"clients"`
	EgressBps int64   `json:"egress_bps"`
	CPU       float64 `json:"cpu"` // 0..1 of the whole machine
}

// Capacity limits an origin; zero means unlimited.
type Capacity struct {
	MaxClients      int64 `json:"max_clients,omitempty"`
	MaxBandwidthBps int64 `json:"max_bandwidth_bps,omitempty"`
}

// Full reports whether l reaches a declared capacity (clients or bandwidth).
func (c Capacity) Full(l Load) bool {
	return (c.MaxClients > 0 && l.Clients >= c.MaxClients) || (c.MaxBandwidthBps > 0 && l.EgressBps >= c.MaxBandwidthBps)
}

// Fill is the share of the declared capacity l uses: the higher of clients/max_clients and
// egress/max_bandwidth, 0 when nothing is declared. It is what balance.spill_at compares.
func (c Capacity) Fill(l Load) float64 {
	u := 0.0
	if c.MaxClients > 0 {
		u = float64(l.Clients) / float64(c.MaxClients)
	}
	if c.MaxBandwidthBps > 0 {
		u = max(u, float64(l.EgressBps)/float64(c.MaxBandwidthBps))
	}
	return u
}

// Utilization is how loaded an origin is for balancing: the higher of its CPU (a NaN or
// negative report reads as idle rather than poisoning comparisons) and c.Fill(l).
func (c Capacity) Utilization(l Load) float64 {
	cpu := l.CPU
	if !(cpu >= 0) {
		cpu = 0
	}
	return max(cpu, c.Fill(l))
}

// Origin is the record an origin writes on every heartbeat.
type Origin struct {
	ID         string    `json:"id"`
	Epoch      uint64    `json:"epoch"` // boot epoch, grows with every process start; a new epoch resets stream-list versions
	Private    string    `json:"private,omitempty"`
	Public     Public    `json:"public"`
	State      string    `json:"state"`
	Load       Load      `json:"load"`
	Capacity   Capacity  `json:"capacity"`
	StartedAt  time.Time `json:"started_at"`
	Software   string    `json:"software,omitempty"`
	StreamsVer uint64    `json:"streams_ver"` // version of the stream list this record was written with
	TTLMillis  int64     `json:"ttl_ms"`
	// IssuedMillis is when the origin signed this copy of the record (unix ms). A gateway
	// trusts the record only until IssuedMillis + TTLMillis (plus its allowed clock skew), so
	// a copy replayed later cannot keep a dead origin alive.
	IssuedMillis int64 `json:"issued_ms"`
}

// StreamMeta describes a running stream; all fields are optional.
type StreamMeta struct {
	Codecs     string `json:"codecs,omitempty"` // as HLS CODECS wants them, e.g. "avc1.64001f,mp4a.40.2"
	Width      int    `json:"width,omitempty"`
	Height     int    `json:"height,omitempty"`
	BitrateBps int64  `json:"bitrate_bps,omitempty"`
}

// Stream is one entry of an origin's stream list.
type Stream struct {
	Name  string     `json:"name"`
	State string     `json:"state"` // running | ondemand
	Meta  StreamMeta `json:"meta,omitzero"`
	// Upstream, when set, marks a relay copy: this origin pulls NAME from the origin with
	// this id (cluster pull-through) and serves it to viewers. A relay is never a publisher
	// of NAME: publish claims and publisher placement ignore it.
	Upstream string `json:"upstream,omitempty"`
}

// Relay reports whether s is a relay copy pulled from another origin of the cluster.
func (s Stream) Relay() bool { return s.Upstream != "" }

// StreamChange is one element of a stream-list delta: an upsert, or a removal when Removed is set.
type StreamChange struct {
	Stream
	Removed bool `json:"removed,omitempty"`
}

var idRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidID reports whether id may name an origin (it becomes part of Redis keys).
func ValidID(id string) bool { return idRe.MatchString(id) }

// ValidatePublicURL checks that u is a bare absolute base URL of the given scheme.
func ValidatePublicURL(scheme, u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return err
	}
	switch {
	case p.Scheme != scheme:
		return fmt.Errorf("scheme must be %q", scheme)
	case p.Host == "" || p.Hostname() == "":
		return fmt.Errorf("host is missing")
	case p.User != nil:
		return fmt.Errorf("user info is not allowed")
	case p.Path != "" && p.Path != "/", p.RawQuery != "", p.Fragment != "", p.Opaque != "":
		return fmt.Errorf("must be scheme://host[:port] with no path, query or fragment")
	case strings.ContainsAny(u, " \t\r\n\\"):
		return fmt.Errorf("contains forbidden characters")
	}
	return nil
}

// Validate checks an origin record as read from the registry or built from config.
func (o *Origin) Validate() error {
	if !ValidID(o.ID) {
		return fmt.Errorf("origin id %q is invalid", o.ID)
	}
	if o.State != StateUp && o.State != StateDraining {
		return fmt.Errorf("origin %s: state %q is invalid", o.ID, o.State)
	}
	if len(o.Public) == 0 {
		return fmt.Errorf("origin %s: no public URL", o.ID)
	}
	for s, u := range o.Public {
		if err := ValidatePublicURL(s, u); err != nil {
			return fmt.Errorf("origin %s: public %s URL %q: %w", o.ID, s, u, err)
		}
	}
	return nil
}

// Carrier is one origin that runs a NAME, with the stream entry it lists (an owner, or a
// relay when Stream.Upstream is set).
type Carrier struct {
	Origin Origin
	Stream Stream
}

// DialURL is the base URL another server of the cluster connects to for scheme: the public
// URL with its host swapped for the origin's private address (the `private` key; a port on
// it is ignored, the public port is kept), or the public URL when the origin has no private
// address. "" when the origin offers no valid URL for scheme.
func (o *Origin) DialURL(scheme string) string {
	pub := strings.TrimSuffix(o.Public[scheme], "/")
	if pub == "" || ValidatePublicURL(scheme, pub) != nil {
		return ""
	}
	host := o.Private
	if host == "" {
		return pub
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	u, err := url.Parse(pub)
	if err != nil {
		return ""
	}
	if p := u.Port(); p != "" {
		host = net.JoinHostPort(host, p)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	out := scheme + "://" + host
	if ValidatePublicURL(scheme, out) != nil {
		return ""
	}
	return out
}
