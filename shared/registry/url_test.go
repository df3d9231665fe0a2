package registry

import (
	"strings"
	"testing"
)

var urlCases = []struct {
	desc    string
	in      string
	addrs   []string
	user    string
	pass    string
	db      int
	master  string
	cluster bool
	tls     bool
	err     string // substring; empty means success
}{
	{desc: "plain", in: "redis://127.0.0.1:6379", addrs: []string{"127.0.0.1:6379"}},
	{desc: "db", in: "redis://h:1/3", addrs: []string{"h:1"}, db: 3},
	{desc: "trailing slash", in: "redis://h:1/", addrs: []string{"h:1"}},
	{desc: "password", in: "redis://:s3cr%40t@h:6379/1", addrs: []string{"h:6379"}, pass: "s3cr@t", db: 1},
	{desc: "user and password", in: "redis://bob:pw@h:6379", addrs: []string{"h:6379"}, user: "bob", pass: "pw"},
	{desc: "password with slash", in: "redis://:a/b?c@h:6379", addrs: []string{"h:6379"}, pass: "a/b?c"},
	{desc: "password with hash", in: "redis://:a#b@h:1", addrs: []string{"h:1"}, pass: "a#b"},
	{desc: "ipv6", in: "redis://[::1]:6379", addrs: []string{"[::1]:6379"}},
	{desc: "tls", in: "rediss://:pw@redis.example.com:6380", addrs: []string{"redis.example.com:6380"}, pass: "pw", tls: true},
	{desc: "sentinel", in: "redis+sentinel://:pw@s1:26379,s2:26379/mymaster?db=2", addrs: []string{"s1:26379", "s2:26379"}, pass: "pw", db: 2, master: "mymaster"},
	{desc: "sentinel tls", in: "rediss+sentinel://s1:26379/m", addrs: []string{"s1:26379"}, master: "m", tls: true},
	{desc: "cluster", in: "redis+cluster://:pw@a:7000,b:7001,c:7002", addrs: []string{"a:7000", "b:7001", "c:7002"}, pass: "pw", cluster: true},
	{desc: "cluster one seed", in: "redis+cluster://a:7000/", addrs: []string{"a:7000"}, cluster: true},

	{desc: "no scheme", in: "127.0.0.1:6379", err: "missing scheme"},
	{desc: "bad scheme", in: "http://h:1", err: "unknown scheme"},
	{desc: "bad topology", in: "redis+ring://h:1", err: "unknown scheme"},
	{desc: "no port", in: "redis://h", err: "host:port"},
	{desc: "bad port", in: "redis://h:99999", err: "invalid port"},
	{desc: "port zero", in: "redis://h:0", err: "invalid port"},
	{desc: "no host", in: "redis://", err: "no host"},
	{desc: "empty host", in: "redis://:1", err: "empty host"},
	{desc: "two hosts standalone", in: "redis://a:1,b:2", err: "one host"},
	{desc: "bad db", in: "redis://h:1/x", err: "database"},
	{desc: "db too big", in: "redis://h:1/16", err: "database"},
	{desc: "unknown param", in: "redis://h:1?foo=1", err: "unknown query parameter"},
	{desc: "fragment", in: "redis://h:1#x", err: "fragment"},
	{desc: "sentinel without master", in: "redis+sentinel://s:1", err: "master name"},
	{desc: "sentinel nested path", in: "redis+sentinel://s:1/a/b", err: "master name"},
	{desc: "sentinel bad db", in: "redis+sentinel://s:1/m?db=-1", err: "database"},
	{desc: "cluster path", in: "redis+cluster://a:1/2", err: "no path"},
	{desc: "user without password", in: "redis://bob@h:1", err: "without password"},
	{desc: "bad password escape", in: "redis://:hunter2%zz@h:1", err: "password encoding"},
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, c := range urlCases {
		t.Run(c.desc, func(t *testing.T) {
			t.Parallel()
			o, err := ParseURL(c.in)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("password in error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(o.Addrs, ",") != strings.Join(c.addrs, ",") || o.Username != c.user || o.Password != c.pass ||
				o.DB != c.db || o.MasterName != c.master || o.IsClusterMode != c.cluster || (o.TLSConfig != nil) != c.tls {
				t.Fatalf("got addrs=%v user=%q pass=%q db=%d master=%q cluster=%v tls=%v",
					o.Addrs, o.Username, o.Password, o.DB, o.MasterName, o.IsClusterMode, o.TLSConfig != nil)
			}
		})
	}
}

func TestParseURLNoPasswordInErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"redis://:hunter2@h",
		"redis://:hunter2@h:0",
		"redis://:hunter2@a:1,b:2",
		"redis://:hunter2@h:1/99",
		"redis://:hunter2@h:1?x=1",
		"redis://:hun/ter2@h",
		"redis://:hun?ter2@h",
		"ftp://:hunter2@h:1",
		"redis+sentinel://:hunter2@s:1",
		"redis+cluster://:hunter2@h:1/x",
	} {
		_, err := ParseURL(in)
		if err == nil {
			t.Errorf("%s: no error", in)
			continue
		}
		for _, frag := range []string{"hunter2", "hun", "ter2"} {
			if strings.Contains(err.Error(), frag) {
				t.Errorf("error %q contains password text %q", err, frag)
			}
		}
	}
}

func TestDial(t *testing.T) {
	t.Parallel()
	c, err := Dial("redis://127.0.0.1:1")
	if err != nil || c == nil {
		t.Fatalf("Dial = %v, %v", c, err)
	}
	_ = c.Close()
	if _, err := Dial("nope"); err == nil {
		t.Fatal("Dial accepted a bad URL")
	}
}

func FuzzParseURL(f *testing.F) {
	for _, c := range urlCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		o, err := ParseURL(in)
		if err != nil {
			// A password long enough to recognise must not come back in the message.
			if _, rest, ok := strings.Cut(in, "://"); ok {
				if i := strings.LastIndex(rest, "@"); i >= 0 {
					if _, pass, ok := strings.Cut(rest[:i], ":"); ok && len(pass) >= 8 && !strings.Contains(rest[i:], pass) && !strings.Contains(in[:strings.Index(in, "://")], pass) {
						if strings.Contains(err.Error(), pass) {
							t.Fatalf("password %q in error %q", pass, err)
						}
					}
				}
			}
			return
		}
		if len(o.Addrs) == 0 {
			t.Fatal("accepted without addresses")
		}
		if o.MasterName == "" && !o.IsClusterMode && len(o.Addrs) != 1 {
			t.Fatalf("standalone with %d addrs", len(o.Addrs))
		}
		if o.DB < 0 || o.DB > 15 {
			t.Fatalf("db %d", o.DB)
		}
	})
}
