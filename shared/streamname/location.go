package streamname

import "net/netip"

// maxQueryLen bounds a query carried into a redirect; long tokens (JWTs) fit with room.
const maxQueryLen = 8192

// Location returns base + escapedPath + ("?" + rawQuery if any): the redirect target on the
// origin whose registered public base URL (scheme://host[:port], see
// cluster.ValidatePublicURL) is base. It refuses, with false:
//   - a base that is not a bare lower-case scheme and a plain host[:port] (one trailing
//     slash is dropped), so a bad registry entry cannot smuggle a path, user info or query;
//   - a path that does not start with exactly one "/", or holds bytes outside printable
//     ASCII, a backslash, '?', '#', or a '%' not followed by two hex digits;
//   - a query longer than 8 KiB or with bytes outside printable ASCII (space and control
//     characters included) or '#'.
//
// Whenever it returns true, the result parses (net/url) with exactly base's scheme and host.
// It allocates only the result.
func Location(base, escapedPath, rawQuery string) (string, bool) {
	if len(base) > 1 && base[len(base)-1] == '/' {
		base = base[:len(base)-1]
	}
	if !validBase(base) || !validLocationPath(escapedPath) || !ValidQuery(rawQuery) {
		return "", false
	}
	if rawQuery == "" {
		return base + escapedPath, true
	}
	return base + escapedPath + "?" + rawQuery, true
}

// validBase accepts scheme://host[:port] with a lower-case scheme and a host made of
// letters, digits, '.', '-', '_' or a bracketed IPv6 literal without a zone (one that
// netip.ParseAddr, like net/url, reads as IPv6).
func validBase(b string) bool {
	i := 0
	for i < len(b) && (b[i] >= 'a' && b[i] <= 'z' || i > 0 && (b[i] >= '0' && b[i] <= '9' || b[i] == '+' || b[i] == '-' || b[i] == '.')) {
		i++
	}
	if i == 0 || len(b) < i+3 || b[i:i+3] != "://" {
		return false
	}
	host := b[i+3:]
	if host == "" {
		return false
	}
	if host[0] == '[' {
		end := 1
		for end < len(host) && (isHex(host[end]) || host[end] == ':' || host[end] == '.') {
			end++
		}
		if end == 1 || end >= len(host) || host[end] != ']' {
			return false
		}
		// Hex digits and colons are not yet an address ("[0]", "[::1::]"); net/url accepts
		// only an IPv6 literal (IPv4-mapped included) in brackets, so ask the same parser.
		if a, err := netip.ParseAddr(host[1:end]); err != nil || a.Is4() || a.Zone() != "" {
			return false
		}
		return validPort(host[end+1:])
	}
	end := 0
	for end < len(host) && (isAlnum(host[end]) || host[end] == '.' || host[end] == '-' || host[end] == '_') {
		end++
	}
	return end > 0 && validPort(host[end:])
}

// validPort accepts "" or ":" followed by 1 to 5 digits.
func validPort(p string) bool {
	if p == "" {
		return true
	}
	if p[0] != ':' || len(p) < 2 || len(p) > 6 {
		return false
	}
	for i := 1; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

func validLocationPath(p string) bool {
	// "//host" would be read as an authority: exactly one leading slash.
	if len(p) == 0 || p[0] != '/' || len(p) > 1 && p[1] == '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c <= ' ' || c >= 0x7f, c == '\\', c == '?', c == '#':
			return false
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return false
			}
		}
	}
	return true
}

// ValidQuery reports whether a raw query may be carried into a redirect: at most 8 KiB of
// printable ASCII without '#' ('%' passes as the client sent it).
func ValidQuery(q string) bool {
	if len(q) > maxQueryLen {
		return false
	}
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
