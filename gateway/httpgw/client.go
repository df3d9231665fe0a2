package httpgw

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// peer returns the client's address (the stickiness key unless a sticky token is present)
// and whether the viewer used https. Forwarding headers count only when the socket's peer
// is a trusted proxy; otherwise anybody could pick their origin or scheme.
func (h *handler) peer(r *http.Request) (client string, secure bool) {
	rq := request{remote: r.RemoteAddr, tls: r.TLS != nil, xff: r.Header["X-Forwarded-For"]}
	if xfp := r.Header["X-Forwarded-Proto"]; len(xfp) > 0 {
		rq.xfp = xfp[0]
	}
	return h.peerOf(&rq)
}

// peerOf is peer for a request of any server.
func (h *handler) peerOf(r *request) (client string, secure bool) {
	secure = r.tls
	addr, client := remoteAddr(r.remote)
	// A zoned address never matches a prefix, so the peer is checked without its zone.
	if len(h.trusted) == 0 || !addr.IsValid() || !h.isTrusted(addr.WithZone("")) {
		return client, secure
	}
	if r.xfp != "" {
		// The left-most value is the scheme the viewer used when proxies append.
		first, _, _ := strings.Cut(r.xfp, ",")
		switch first = strings.TrimSpace(first); {
		case strings.EqualFold(first, "https"):
			secure = true
		case strings.EqualFold(first, "http"):
			secure = false
		}
	}
	if c, ok := h.forwardedFor(r.xff); ok {
		client = c
	}
	return client, secure
}

// forwardedFor walks the merged X-Forwarded-For entries from the right, skipping trusted
// proxies; the first untrusted address is the client. If every entry is trusted the
// left-most one is; if an entry does not parse, the walk stops at the last good one (the
// result steers stickiness, and the address a bound play token is checked against).
func (h *handler) forwardedFor(headers []string) (string, bool) {
	found := ""
	for i := len(headers) - 1; i >= 0; i-- {
		for v := headers[i]; v != ""; {
			var e string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				e, v = v[j+1:], v[:j]
			} else {
				e, v = v, ""
			}
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			addr, s, ok := parseForwarded(e)
			if !ok {
				return found, found != ""
			}
			found = s
			if !h.isTrusted(addr) {
				return found, true
			}
		}
	}
	return found, found != ""
}

func (h *handler) isTrusted(a netip.Addr) bool {
	for _, p := range h.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// remoteAddr parses r.RemoteAddr; the string form avoids an allocation when it is already
// canonical, so the same viewer gives the same key on every gateway.
func remoteAddr(ra string) (netip.Addr, string) {
	ap, err := netip.ParseAddrPort(ra)
	if err != nil {
		host, _, err := net.SplitHostPort(ra)
		if err != nil {
			host = ra
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			return netip.Addr{}, host
		}
		a = a.Unmap()
		return a, a.String()
	}
	a := ap.Addr()
	if a.Is4() {
		return a, ra[:strings.LastIndexByte(ra, ':')]
	}
	a = a.Unmap()
	return a, a.String()
}

// parseForwarded parses one X-Forwarded-For entry: an address, optionally with a port
// (some load balancers append one). v4-mapped addresses fold to v4 and zones are dropped,
// so neither notation can alias a trusted address.
func parseForwarded(e string) (netip.Addr, string, bool) {
	a, err := netip.ParseAddr(e)
	if err != nil {
		ap, err := netip.ParseAddrPort(e)
		if err != nil {
			return netip.Addr{}, "", false
		}
		a = ap.Addr()
	} else if a.Is4() {
		return a, e, true // already canonical: no allocation
	}
	a = a.Unmap().WithZone("")
	return a, a.String(), true
}
