package cluster

import "testing"

func TestDialURL(t *testing.T) {
	for _, tc := range []struct{ public, private, want string }{
		{"rtsp://edge1.example.com:8555", "", "rtsp://edge1.example.com:8555"},
		{"rtsp://edge1.example.com:8555/", "10.0.0.5", "rtsp://10.0.0.5:8555"},
		{"rtsp://edge1.example.com:8555", "10.0.0.5:9999", "rtsp://10.0.0.5:8555"},
		{"rtsp://edge1.example.com:8555", "fd00::1", "rtsp://[fd00::1]:8555"},
		{"rtsp://edge1.example.com", "fd00::1", "rtsp://[fd00::1]"},
		{"rtsp://edge1.example.com:8555", "bad host", ""},
		{"", "10.0.0.5", ""},
		{"rtsp://edge1.example.com:8555/path", "", ""},
	} {
		o := Origin{Private: tc.private, Public: Public{"rtsp": tc.public}}
		if got := o.DialURL("rtsp"); got != tc.want {
			t.Errorf("DialURL(%q, private %q) = %q, want %q", tc.public, tc.private, got, tc.want)
		}
	}
}

// TestLoadTerms: Fill counts the declared capacity only, Utilization adds CPU, Full is reached
// at either declared limit; the gateway balances and the relays choose upstreams on these.
func TestLoadTerms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc       string
		l          Load
		c          Capacity
		fill, util float64
		full       bool
	}{
		{"nothing set", Load{Clients: 50, EgressBps: 1e9}, Capacity{}, 0, 0, false},
		{"cpu only", Load{CPU: 0.4}, Capacity{}, 0, 0.4, false},
		{"clients dominate", Load{Clients: 50, CPU: 0.1}, Capacity{MaxClients: 100}, 0.5, 0.5, false},
		{"egress dominates", Load{Clients: 10, EgressBps: 900, CPU: 0.1}, Capacity{MaxClients: 100, MaxBandwidthBps: 1000}, 0.9, 0.9, false},
		{"busy cpu fills nothing", Load{Clients: 10, CPU: 0.95}, Capacity{MaxClients: 100}, 0.1, 0.95, false},
		{"negative cpu is idle", Load{CPU: -3}, Capacity{}, 0, 0, false},
		{"clients at max", Load{Clients: 100}, Capacity{MaxClients: 100}, 1, 1, true},
		{"egress at max", Load{EgressBps: 1000}, Capacity{MaxBandwidthBps: 1000}, 1, 1, true},
	}
	for _, tc := range tests {
		if fill, util, full := tc.c.Fill(tc.l), tc.c.Utilization(tc.l), tc.c.Full(tc.l); fill != tc.fill || util != tc.util || full != tc.full {
			t.Errorf("%s: fill %v util %v full %v, want %v %v %v", tc.desc, fill, util, full, tc.fill, tc.util, tc.full)
		}
	}
}
