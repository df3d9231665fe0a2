package pubauth

import (
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const playSecret = "play-secret-0123456789ab"

var (
	future = now.Unix() + 60
	past   = now.Unix() - 1
)

var tokenCases = []struct {
	desc, name, query, client string
	want                      error
}{
	{"unbound", "live/cam1", TokenQuery(playSecret, "live/cam1", future, ""), "192.0.2.7:5000", nil},
	{"extra params kept", "live/cam1", "a=b&" + TokenQuery(playSecret, "live/cam1", future, "") + "&key=x", "192.0.2.7", nil},
	{"bound ipv4", "live/cam1", TokenQuery(playSecret, "live/cam1", future, "192.0.2.7"), "192.0.2.7:5000", nil},
	{"bound ipv4, mapped client", "live/cam1", TokenQuery(playSecret, "live/cam1", future, "192.0.2.7"), "[::ffff:192.0.2.7]:5000", nil},
	{"bound ipv6", "live/cam1", TokenQuery(playSecret, "live/cam1", future, "2001:db8::1"), "[2001:db8::1]:5000", nil},
	{"bound ipv6 raw colons", "live/cam1", "token=" + SignToken(playSecret, "live/cam1", future, "2001:db8::1") + "&ip=2001:db8::1", "2001:db8::1", nil},
	{"missing", "live/cam1", "", "192.0.2.7", ErrNoToken},
	{"empty token", "live/cam1", "token=", "192.0.2.7", ErrNoToken},
	{"other params only", "live/cam1", "key=abc&ip=192.0.2.7", "192.0.2.7", ErrNoToken},
	{"other name", "live/cam2", TokenQuery(playSecret, "live/cam1", future, ""), "192.0.2.7", ErrBadToken},
	{"other secret", "live/cam1", TokenQuery("another-secret-0123456", "live/cam1", future, ""), "192.0.2.7", ErrBadToken},
	{"publish key is no token", "live/cam1", "token=" + strconv.FormatInt(future, 10) + "." + Sign(playSecret, "live/cam1", future)[:22], "192.0.2.7", ErrBadToken},
	{"expired", "live/cam1", TokenQuery(playSecret, "live/cam1", past, ""), "192.0.2.7", ErrTokenExpired},
	{"expires now", "live/cam1", TokenQuery(playSecret, "live/cam1", now.Unix(), ""), "192.0.2.7", ErrTokenExpired},
	{"expiry moved", "live/cam1", "token=" + strconv.FormatInt(future, 10) + SignToken(playSecret, "live/cam1", past, "")[len(strconv.FormatInt(past, 10)):], "192.0.2.7", ErrBadToken},
	{"other client", "live/cam1", TokenQuery(playSecret, "live/cam1", future, "192.0.2.7"), "192.0.2.8:5000", ErrOtherClient},
	{"client unparsable", "live/cam1", TokenQuery(playSecret, "live/cam1", future, "192.0.2.7"), "", ErrOtherClient},
	{"ip stripped", "live/cam1", "token=" + SignToken(playSecret, "live/cam1", future, "192.0.2.7"), "192.0.2.7", ErrBadToken},
	{"ip added", "live/cam1", TokenQuery(playSecret, "live/cam1", future, "") + "&ip=192.0.2.7", "192.0.2.7", ErrBadToken},
	{"ip changed", "live/cam1", "token=" + SignToken(playSecret, "live/cam1", future, "192.0.2.7") + "&ip=192.0.2.8", "192.0.2.8", ErrBadToken},
	{"ip empty", "live/cam1", TokenQuery(playSecret, "live/cam1", future, "") + "&ip=", "192.0.2.7", ErrBadToken},
	{"ip bad escape", "live/cam1", TokenQuery(playSecret, "live/cam1", future, "") + "&ip=%zz", "192.0.2.7", ErrBadToken},
	{"ip not an address", "live/cam1", TokenQuery(playSecret, "live/cam1", future, "host.example"), "192.0.2.7", ErrBadToken},
	{"two tokens", "live/cam1", TokenQuery(playSecret, "live/cam1", future, "") + "&token=1.x", "192.0.2.7", ErrBadToken},
	{"two ips", "live/cam1", TokenQuery(playSecret, "live/cam1", future, "192.0.2.7") + "&ip=192.0.2.7", "192.0.2.7", ErrBadToken},
	{"no dot", "live/cam1", "token=" + strings.Replace(SignToken(playSecret, "live/cam1", future, ""), ".", "", 1), "192.0.2.7", ErrBadToken},
	{"leading zero exp", "live/cam1", "token=0" + SignToken(playSecret, "live/cam1", future, ""), "192.0.2.7", ErrBadToken},
	{"signed exp", "live/cam1", "token=+" + SignToken(playSecret, "live/cam1", future, ""), "192.0.2.7", ErrBadToken},
	{"zero exp", "live/cam1", "token=0." + strings.Repeat("A", 22), "192.0.2.7", ErrBadToken},
	{"huge exp", "live/cam1", "token=99999999999999999999." + strings.Repeat("A", 22), "192.0.2.7", ErrBadToken},
	{"short mac", "live/cam1", TokenQuery(playSecret, "live/cam1", future, "")[:30], "192.0.2.7", ErrBadToken},
	{"padded mac", "live/cam1", TokenQuery(playSecret, "live/cam1", future, "") + "==", "192.0.2.7", ErrBadToken},
	{"std base64 mac", "live/cam1", "token=" + strconv.FormatInt(future, 10) + ".+++++++++++++++++++++w", "192.0.2.7", ErrBadToken},
	{"too long", "live/cam1", TokenQuery(playSecret, "live/cam1", future, "") + "&pad=" + strings.Repeat("a", maxQuery), "192.0.2.7", ErrBadToken},
}

func TestCheckToken(t *testing.T) {
	for _, c := range tokenCases {
		err := CheckToken(playSecret, c.name, c.query, c.client, now)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: CheckToken(%q, %.90q, %q) = %v, want %v", c.desc, c.name, c.query, c.client, err, c.want)
		}
	}
	if err := CheckToken("", "live/cam1", TokenQuery("", "live/cam1", future, ""), "", now); !errors.Is(err, ErrNoSecret) {
		t.Errorf("empty secret: %v", err)
	}
}

func TestTokenForm(t *testing.T) {
	tok := SignToken(playSecret, "live/cam1", 1800000060, "")
	exp, mac, ok := strings.Cut(tok, ".")
	if !ok || exp != "1800000060" || len(mac) != 22 || strings.ContainsAny(mac, "+/=") {
		t.Errorf("SignToken = %q, want 1800000060.<22 base64url chars>", tok)
	}
	if q := TokenQuery(playSecret, "a", 5, "2001:db8::1"); !strings.HasSuffix(q, "&ip=2001%3Adb8%3A%3A1") {
		t.Errorf("TokenQuery bound = %q", q)
	}
}

// TestTokenOpenSSL: the README's openssl one-liner makes the same MAC as SignToken.
func TestTokenOpenSSL(t *testing.T) {
	for _, tool := range []string{"openssl", "basenc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install -y openssl coreutils", tool)
		}
	}
	for _, ip := range []string{"", "192.0.2.7"} {
		cmd := exec.Command("sh", "-c", `printf 'play\n%s\n%s\n%s' "$NAME" "$EXP" "$ADDR" | openssl dgst -sha256 -hmac "$SECRET" -binary | head -c 16 | basenc --base64url | tr -d =`)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "NAME=live/cam1", "EXP=1800000060", "ADDR=" + ip, "SECRET=" + playSecret}
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		want := SignToken(playSecret, "live/cam1", 1800000060, ip)
		if got := "1800000060." + strings.TrimSpace(string(out)); got != want {
			t.Errorf("ip %q: openssl made %s, SignToken %s", ip, got, want)
		}
	}
}

func TestTokenCommand(t *testing.T) {
	env := []string{"HOME=/x", PlaySecretEnv + "=" + playSecret}
	var out strings.Builder
	if err := TokenCommand([]string{"live/cam1"}, env, now, &out); err != nil {
		t.Fatal(err)
	}
	q := strings.TrimSpace(out.String())
	if err := CheckToken(playSecret, "live/cam1", q, "192.0.2.1", now.Add(59*time.Minute)); err != nil {
		t.Fatalf("default 1h token %q refused within the hour: %v", q, err)
	}
	if err := CheckToken(playSecret, "live/cam1", q, "192.0.2.1", now.Add(61*time.Minute)); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("1h token %q after the hour: %v", q, err)
	}
	for _, args := range [][]string{{"live/cam1", "-ttl", "10m", "-ip", "::ffff:192.0.2.7"}, {"-ttl", "10m", "-ip", "192.0.2.7", "live/cam1"}} {
		out.Reset()
		if err := TokenCommand(args, env, now, &out); err != nil {
			t.Fatal(err)
		}
		q = strings.TrimSpace(out.String())
		if !strings.HasSuffix(q, "&ip=192.0.2.7") {
			t.Errorf("%q: %q, want the address unmapped in ip=", args, q)
		}
		if err := CheckToken(playSecret, "live/cam1", q, "192.0.2.7:1", now.Add(9*time.Minute)); err != nil {
			t.Errorf("%q: bound token refused for its client: %v", args, err)
		}
		if err := CheckToken(playSecret, "live/cam1", q, "192.0.2.8:1", now); !errors.Is(err, ErrOtherClient) {
			t.Errorf("%q: bound token for another client: %v", args, err)
		}
		if err := CheckToken(playSecret, "live/cam1", q, "192.0.2.7:1", now.Add(11*time.Minute)); !errors.Is(err, ErrTokenExpired) {
			t.Errorf("%q: 10m token after 11m: %v", args, err)
		}
	}
	for _, c := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"live/cam1"}, nil, PlaySecretEnv},
		{[]string{}, env, "not a valid stream NAME"},
		{[]string{"a/../b"}, env, "not a valid stream NAME"},
		{[]string{"x", "-ttl", "0s"}, env, "positive"},
		{[]string{"x", "-ttl", "-1h"}, env, "positive"},
		{[]string{"x", "-ip", "host.example"}, env, "not an IP address"},
		{[]string{"x", "-ip", "fe80::1%eth0"}, env, "not an IP address"},
		{[]string{"x", "extra"}, env, "unexpected argument"},
	} {
		out.Reset()
		err := TokenCommand(c.args, c.env, now, &out)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("TokenCommand(%q): %v, want %q", c.args, err, c.want)
		}
	}
}

func TestPlayAuthorizer(t *testing.T) {
	if PlayAuthorizer("") != nil {
		t.Fatal("no secret must leave play open (nil)")
	}
	a := PlayAuthorizer(playSecret)
	if err := a("live/cam1", TokenQuery(playSecret, "live/cam1", time.Now().Add(time.Minute).Unix(), ""), "192.0.2.1:1"); err != nil {
		t.Fatal(err)
	}
	if err := a("live/cam1", "", "192.0.2.1:1"); !errors.Is(err, ErrNoToken) {
		t.Fatalf("no token: %v", err)
	}
}

func FuzzCheckToken(f *testing.F) {
	for _, c := range tokenCases {
		f.Add(c.name, c.query, c.client, future)
	}
	f.Fuzz(func(t *testing.T, name, query, client string, exp int64) {
		err := CheckToken(playSecret, name, query, client, now)
		if err != nil && !errors.Is(err, ErrNoToken) && !errors.Is(err, ErrBadToken) && !errors.Is(err, ErrTokenExpired) && !errors.Is(err, ErrOtherClient) {
			t.Fatalf("unexpected error %v", err)
		}
		if err == nil {
			// Accepted: the token must be the one SignToken makes for this name.
			tok, _ := rawParam(query, TokenParam)
			exp, _, _ := strings.Cut(tok, ".")
			e, _ := strconv.ParseInt(exp, 10, 64)
			ip, _ := rawParam(query, TokenIPParam)
			if !strings.Contains(ip, "%") && tok != SignToken(playSecret, name, e, ip) {
				t.Fatalf("accepted %q for %q", query, name)
			}
		}
		// A freshly signed unbound token passes unless expired or its expiry is not positive.
		err = CheckToken(playSecret, name, TokenQuery(playSecret, name, exp, ""), client, now)
		switch {
		case exp <= 0:
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("exp %d: %v", exp, err)
			}
		case exp > now.Unix():
			if len(TokenQuery(playSecret, name, exp, "")) <= maxQuery && err != nil {
				t.Fatalf("fresh token for %q exp %d refused: %v", name, exp, err)
			}
		default:
			if !errors.Is(err, ErrTokenExpired) {
				t.Fatalf("stale token for %q exp %d: %v", name, exp, err)
			}
		}
	})
}

// BenchmarkCheckToken: the pooled play-token check (what the gateway runs per redirect)
// against the unpooled CheckToken and the publish-key Check as baselines.
func BenchmarkCheckToken(b *testing.B) {
	exp := time.Now().Add(time.Hour).Unix()
	q := TokenQuery(playSecret, "live/cam1", exp, "")
	pooled := PlayAuthorizer(playSecret)
	key := Query(secret, "live/cam1", 0)
	for _, bc := range []struct {
		name string
		f    func() error
	}{
		{"publish-key-Check", func() error { return Check(secret, "live/cam1", key, now) }},
		{"CheckToken", func() error { return CheckToken(playSecret, "live/cam1", q, "192.0.2.1:5000", time.Now()) }},
		{"PlayAuthorizer", func() error { return pooled("live/cam1", q, "192.0.2.1:5000") }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
