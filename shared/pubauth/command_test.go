package pubauth

import (
	"strings"
	"testing"
	"time"
)

func TestKeyCommand(t *testing.T) {
	env := []string{"HOME=/x", SecretEnv + "=" + secret}
	var out strings.Builder
	if err := KeyCommand([]string{"-name", "live/cam1"}, env, now, &out); err != nil {
		t.Fatal(err)
	}
	q := strings.TrimSpace(out.String())
	if err := Check(secret, "live/cam1", q, now.Add(1000*time.Hour)); err != nil || strings.Contains(q, "exp=") {
		t.Fatalf("no-expiry key %q: %v", q, err)
	}
	out.Reset()
	if err := KeyCommand([]string{"-name", "live/cam1", "-exp", "1h"}, env, now, &out); err != nil {
		t.Fatal(err)
	}
	q = strings.TrimSpace(out.String())
	if err := Check(secret, "live/cam1", q, now.Add(59*time.Minute)); err != nil {
		t.Fatalf("1h key %q refused within the hour: %v", q, err)
	}
	if err := Check(secret, "live/cam1", q, now.Add(61*time.Minute)); err == nil {
		t.Fatalf("1h key %q accepted after the hour", q)
	}
	for _, c := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"-name", "live/cam1"}, nil, SecretEnv},
		{[]string{}, env, "not a valid stream NAME"},
		{[]string{"-name", "a/../b"}, env, "not a valid stream NAME"},
		{[]string{"-name", "x", "-exp", "-1h"}, env, "negative"},
		{[]string{"-name", "x", "extra"}, env, "unexpected argument"},
	} {
		out.Reset()
		err := KeyCommand(c.args, c.env, now, &out)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("KeyCommand(%q): %v, want %q", c.args, err, c.want)
		}
	}
}
