package pubauth

import (
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const secret = "publish-secret-0123456789"

var now = time.Unix(1_800_000_000, 0)

var cases = []struct {
	desc, name, query string
	want              error
}{
	{"no expiry", "live/cam1", Query(secret, "live/cam1", 0), nil},
	{"future expiry", "live/cam1", Query(secret, "live/cam1", now.Unix()+60), nil},
	{"extra params kept", "live/cam1", "token=x&" + Query(secret, "live/cam1", 0) + "&a=b", nil},
	{"upper-case hex", "live/cam1", "key=" + strings.ToUpper(Sign(secret, "live/cam1", 0)), nil},
	{"exp=0 explicit", "live/cam1", "key=" + Sign(secret, "live/cam1", 0) + "&exp=0", nil},
	{"empty query", "live/cam1", "", ErrNoKey},
	{"empty key", "live/cam1", "key=", ErrNoKey},
	{"other params only", "live/cam1", "token=abc", ErrNoKey},
	{"other name", "live/cam2", Query(secret, "live/cam1", 0), ErrBadKey},
	{"other secret", "live/cam1", Query("another-secret-0123456", "live/cam1", 0), ErrBadKey},
	{"expired", "live/cam1", Query(secret, "live/cam1", now.Unix()-1), ErrExpired},
	{"expires now", "live/cam1", Query(secret, "live/cam1", now.Unix()), ErrExpired},
	{"expiry stripped", "live/cam1", "key=" + Sign(secret, "live/cam1", now.Unix()+60), ErrBadKey},
	{"expiry moved", "live/cam1", "key=" + Sign(secret, "live/cam1", now.Unix()-1) + "&exp=" + strconv.FormatInt(now.Unix()+60, 10), ErrBadKey},
	{"leading zero exp", "live/cam1", "key=" + Sign(secret, "live/cam1", 5) + "&exp=05", ErrBadKey},
	{"signed exp", "live/cam1", "key=" + Sign(secret, "live/cam1", 5) + "&exp=+5", ErrBadKey},
	{"negative exp", "live/cam1", "key=" + Sign(secret, "live/cam1", -5) + "&exp=-5", ErrBadKey},
	{"huge exp", "live/cam1", "key=x&exp=99999999999999999999", ErrBadKey},
	{"two keys", "live/cam1", Query(secret, "live/cam1", 0) + "&key=00", ErrBadKey},
	{"two exps", "live/cam1", Query(secret, "live/cam1", 9e9) + "&exp=9000000000", ErrBadKey},
	{"short key", "live/cam1", "key=" + Sign(secret, "live/cam1", 0)[:62], ErrBadKey},
	{"not hex", "live/cam1", "key=" + strings.Repeat("zz", 32), ErrBadKey},
	{"bad escape", "live/cam1", "key=%zz", ErrBadKey},
	{"too long", "live/cam1", Query(secret, "live/cam1", 0) + "&pad=" + strings.Repeat("a", maxQuery), ErrBadKey},
}

func TestCheck(t *testing.T) {
	for _, c := range cases {
		if err := Check(secret, c.name, c.query, now); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: Check(%q, %.80q) = %v, want %v", c.desc, c.name, c.query, err, c.want)
		}
	}
	if err := Check("", "live/cam1", Query("", "live/cam1", 0), now); !errors.Is(err, ErrNoSecret) {
		t.Errorf("empty secret: %v", err)
	}
}

func TestQueryForm(t *testing.T) {
	if q := Query(secret, "a", 0); !strings.HasPrefix(q, "key=") || len(q) != 4+64 {
		t.Errorf("Query without expiry = %q", q)
	}
	if q := Query(secret, "a", 1700000000); !strings.HasSuffix(q, "&exp=1700000000") {
		t.Errorf("Query with expiry = %q", q)
	}
}

// TestOpenSSL: the README's openssl one-liner makes the same key as Sign.
func TestOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl not found: apt-get install -y openssl")
	}
	for _, exp := range []int64{0, 1700000000} {
		cmd := exec.Command("sh", "-c", `printf '%s\n%s' "$NAME" "$EXP" | openssl dgst -sha256 -hmac "$SECRET" -hex`)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "NAME=live/cam1", "EXP=" + strconv.FormatInt(exp, 10), "SECRET=" + secret}
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		fields := strings.Fields(string(out))
		if got := fields[len(fields)-1]; got != Sign(secret, "live/cam1", exp) {
			t.Errorf("openssl made %s, Sign %s", got, Sign(secret, "live/cam1", exp))
		}
	}
}

func FuzzCheck(f *testing.F) {
	for _, c := range cases {
		f.Add(c.name, c.query, int64(0))
	}
	f.Fuzz(func(t *testing.T, name, query string, exp int64) {
		err := Check(secret, name, query, now)
		if err == nil && !strings.Contains(strings.ToLower(query), Sign(secret, name, 0)) && !strings.Contains(query, "exp=") {
			t.Fatalf("accepted %q for %q without its key", query, name)
		}
		if err != nil && !errors.Is(err, ErrNoKey) && !errors.Is(err, ErrBadKey) && !errors.Is(err, ErrExpired) {
			t.Fatalf("unexpected error %v", err)
		}
		// A freshly signed key always passes unless it has expired.
		err = Check(secret, name, Query(secret, name, exp), now)
		switch {
		case exp < 0:
			// Query writes "-N", which Check refuses as not decimal digits.
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("negative exp %d: %v", exp, err)
			}
		case exp == 0 || exp > now.Unix():
			if err != nil {
				t.Fatalf("fresh key for %q exp %d refused: %v", name, exp, err)
			}
		default:
			if !errors.Is(err, ErrExpired) {
				t.Fatalf("stale key for %q exp %d: %v", name, exp, err)
			}
		}
	})
}

func TestAuthorizer(t *testing.T) {
	if Authorizer("") != nil {
		t.Fatal("no secret must leave publishing open (nil)")
	}
	a := Authorizer(secret)
	if err := a("live/cam1", Query(secret, "live/cam1", 0)); err != nil {
		t.Fatal(err)
	}
	if err := a("live/cam1", ""); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
}
