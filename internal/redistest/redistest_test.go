package redistest

import (
	"strings"
	"testing"
)

func TestStandaloneKillRestart(t *testing.T) {
	t.Parallel()
	s := Standalone(t)
	if !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") {
		t.Fatalf("URL = %q", s.URL())
	}
	if _, err := Do(s.Addr(), "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if _, err := Do(s.Addr(), "PING"); err == nil {
		t.Fatal("PING answered after Kill")
	}
	port := s.Port()
	s.Restart()
	if s.Port() != port {
		t.Fatalf("port changed from %d to %d", port, s.Port())
	}
	if got, err := Do(s.Addr(), "GET", "k"); err != nil || got != "" {
		t.Fatalf("after restart GET k = %q, %v; want empty (no persistence)", got, err)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := NewCluster(t)
	if len(c.Nodes) != 3 {
		t.Fatalf("%d nodes", len(c.Nodes))
	}
	for _, n := range c.Nodes {
		info, err := Do(n.Addr(), "CLUSTER", "INFO")
		if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
			t.Fatalf("node %s: %v\n%s", n.Addr(), err, info)
		}
	}
	if !strings.HasPrefix(c.URL(), "redis+cluster://127.0.0.1:") || strings.Count(c.URL(), ",") != 2 {
		t.Fatalf("URL = %q", c.URL())
	}
}

func TestSentinel(t *testing.T) {
	t.Parallel()
	s := NewSentinelWith(t, SentinelConfig{Sentinels: 3, Replica: true})
	if len(s.Sentinels) != 3 || s.Replica == nil {
		t.Fatalf("sentinels %d replica %v", len(s.Sentinels), s.Replica)
	}
	if !strings.HasSuffix(s.URL(), "/mymaster") || !strings.HasPrefix(s.URL(), "redis+sentinel://") {
		t.Fatalf("URL = %q", s.URL())
	}
	role, err := Do(s.Replica.Addr(), "ROLE")
	if err != nil || !strings.HasPrefix(role, "slave") {
		t.Fatalf("replica ROLE = %q, %v", role, err)
	}
}
