package httpgw

import (
	"net/netip"
	"testing"
)

// FuzzForwardedFor checks that whatever X-Forwarded-For holds, the client key is either the
// socket's fallback ("" here) or one canonical address without a port: anything else would
// split one viewer into many stickiness keys, or let text reach the key unchecked.
func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{
		"203.0.113.7", "6.6.6.6, 203.0.113.7", "6.6.6.6, 203.0.113.7, 10.0.0.3, 10.0.0.2",
		"10.0.0.9, 10.0.0.2", "203.0.113.7, bogus, 10.0.0.2", "bogus", " , 203.0.113.7 ,, ",
		"203.0.113.7:5555", "1.2.3.4:80", "192.0.2.1:80, 10.0.0.2", "203.0.113.7, ::ffff:10.0.0.2",
		"2001:db8::7, fe80::2%eth0", "2001:DB8::7", "[2001:db8::7]:443", "",
	} {
		f.Add(s)
	}
	h := &handler{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fe80::/10")}}
	f.Fuzz(func(t *testing.T, xff string) {
		got, ok := h.forwardedFor([]string{xff})
		if !ok {
			if got != "" {
				t.Fatalf("%q: not found but %q", xff, got)
			}
			return
		}
		a, err := netip.ParseAddr(got)
		if err != nil {
			t.Fatalf("%q: client key %q is not an address: %v", xff, got, err)
		}
		if a.String() != got || a.Is4In6() || a.Zone() != "" {
			t.Fatalf("%q: client key %q is not canonical (%s)", xff, got, a)
		}
	})
}
