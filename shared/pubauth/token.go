package pubauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Play tokens: a signed, expiring grant to play one NAME, optionally from one client
// address, carried in the query of a play URL:
//
//	token=EXP.MAC          any client
//	token=EXP.MAC&ip=ADDR  only the client whose address is ADDR
//	MAC = base64url-unpadded(first 16 bytes of HMAC-SHA256(play_secret, "play\n" NAME "\n" EXP "\n" ADDR))
//
// EXP is the expiry in unix seconds (decimal, no sign, no leading zero, never 0); ADDR is ""
// for an unbound token. The "play\n" prefix keeps a token from ever equalling a publish key
// when both secrets are the same. The same MAC can be made with openssl:
//
//	printf 'play\n%s\n%s\n%s' "$NAME" "$EXP" "$ADDR" | openssl dgst -sha256 -hmac "$SECRET" -binary | head -c 16 | basenc --base64url | tr -d =

// Errors of CheckToken. Every error CheckToken returns wraps one of them.
var (
	ErrNoToken      = errors.New("play token missing")
	ErrBadToken     = errors.New("play token wrong")
	ErrTokenExpired = errors.New("play token expired")
	ErrOtherClient  = errors.New("play token is for another client address")
)

// PlaySecretEnv is the variable TokenCommand reads the secret from (the auth.play_secret key).
const PlaySecretEnv = "PEERGATE_AUTH_PLAY_SECRET"

// Query parameters of a play token.
const (
	TokenParam   = "token"
	TokenIPParam = "ip"
)

const (
	macLen      = 16
	macB64Len   = 22 // base64url of 16 bytes, unpadded
	maxTokenLen = 19 + 1 + macB64Len
	maxIPLen    = 64
)

// macer computes token MACs under one secret; pooled by PlayAuthorizer so the redirect
// path does not build an HMAC per request.
type macer struct {
	h   hash.Hash
	buf []byte
	sum []byte
}

func newMacer(secret string) *macer {
	return &macer{h: hmac.New(sha256.New, []byte(secret)), buf: make([]byte, 0, 256), sum: make([]byte, 0, sha256.Size)}
}

func (m *macer) mac(name string, exp int64, ip string) [macLen]byte {
	m.h.Reset()
	b := append(m.buf[:0], "play\n"...)
	b = append(b, name...)
	b = append(b, '\n')
	b = strconv.AppendInt(b, exp, 10)
	b = append(b, '\n')
	b = append(b, ip...)
	m.h.Write(b)
	m.buf = b[:0]
	m.sum = m.h.Sum(m.sum[:0])
	var out [macLen]byte
	copy(out[:], m.sum)
	return out
}

func tokenMAC(secret, name string, exp int64, ip string) [macLen]byte {
	return newMacer(secret).mac(name, exp, ip)
}

// SignToken returns the token value "EXP.MAC" for name under secret, valid until exp (unix
// seconds, > 0), bound to the client address ip when ip is not "".
func SignToken(secret, name string, exp int64, ip string) string {
	mac := tokenMAC(secret, name, exp, ip)
	return strconv.FormatInt(exp, 10) + "." + base64.RawURLEncoding.EncodeToString(mac[:])
}

// TokenQuery returns the query a player appends: "token=EXP.MAC" or, bound to ip,
// "token=EXP.MAC&ip=ADDR" (ADDR escaped for a query).
func TokenQuery(secret, name string, exp int64, ip string) string {
	q := TokenParam + "=" + SignToken(secret, name, exp, ip)
	if ip != "" {
		q += "&" + TokenIPParam + "=" + url.QueryEscape(ip)
	}
	return q
}

// CheckToken reports whether rawQuery (without the '?') carries a valid, unexpired play token
// for name under secret at time now, presented by client (an address, with or without a
// port, as the listener sees it). An empty secret is an error (ErrNoSecret): a caller that
// leaves play open must not call CheckToken. The MAC is compared in constant time. It reads
// the raw query without url.ParseQuery and allocates little, for the gateway's redirect path.
func CheckToken(secret, name, rawQuery, client string, now time.Time) error {
	if secret == "" {
		return ErrNoSecret
	}
	return checkToken(nil, secret, name, rawQuery, client, now)
}

// checkToken is CheckToken with the MAC made by a pooled macer when pool is not nil.
func checkToken(pool *sync.Pool, secret, name, rawQuery, client string, now time.Time) error {
	if len(rawQuery) > maxQuery {
		return ErrBadToken
	}
	tok, ntok := rawParam(rawQuery, TokenParam)
	ip, nip := rawParam(rawQuery, TokenIPParam)
	switch {
	case ntok == 0 || tok == "":
		return ErrNoToken
	case ntok > 1 || nip > 1 || len(tok) > maxTokenLen || len(ip) > maxIPLen*3:
		return ErrBadToken
	}
	if nip == 1 && strings.IndexByte(ip, '%') >= 0 {
		var err error
		if ip, err = url.QueryUnescape(ip); err != nil {
			return ErrBadToken
		}
	}
	if nip == 1 && ip == "" {
		return ErrBadToken
	}
	expS, macS, ok := strings.Cut(tok, ".")
	if !ok || len(macS) != macB64Len {
		return ErrBadToken
	}
	exp, ok := parseExp(expS)
	if !ok {
		return ErrBadToken
	}
	var got [macLen + 2]byte
	var src [macB64Len]byte
	copy(src[:], macS)
	if n, err := base64.RawURLEncoding.Decode(got[:], src[:]); err != nil || n != macLen {
		return ErrBadToken
	}
	var want [macLen]byte
	if pool != nil {
		m := pool.Get().(*macer)
		want = m.mac(name, exp, ip)
		pool.Put(m)
	} else {
		want = tokenMAC(secret, name, exp, ip)
	}
	if !hmac.Equal(got[:macLen], want[:]) {
		return ErrBadToken
	}
	if now.Unix() >= exp {
		return ErrTokenExpired
	}
	if ip != "" {
		bound, err := netip.ParseAddr(ip)
		if err != nil {
			return ErrBadToken
		}
		if c, ok := clientAddr(client); !ok || c != bound.Unmap() {
			return ErrOtherClient
		}
	}
	return nil
}

// parseExp reads a positive decimal expiry: digits only, no leading zero.
func parseExp(s string) (int64, bool) {
	if s == "" || len(s) > 19 || s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// clientAddr parses "ip", "ip:port" or "[ip]:port" (an IPv4-mapped address counts as IPv4).
func clientAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	return a.Unmap(), err == nil
}

// rawParam returns the raw value of the first key=value pair named key and how many pairs
// are named key.
func rawParam(rawQuery, key string) (string, int) {
	var val string
	n := 0
	for q := rawQuery; q != ""; {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k == key {
			if n == 0 {
				val = v
			}
			n++
		}
	}
	return val, n
}

// PlayAuthorizer returns the check a listener's AuthorizePlay field takes: CheckToken under
// secret at the current time. With no secret it returns nil: anyone may play.
func PlayAuthorizer(secret string) func(name, query, client string) error {
	if secret == "" {
		return nil
	}
	pool := &sync.Pool{New: func() any { return newMacer(secret) }}
	return func(name, query, client string) error {
		return checkToken(pool, secret, name, query, client, time.Now())
	}
}
