// Package pubauth signs and checks publish keys: a per-stream credential an operator computes
// without a database.
//
//	key = hex(HMAC-SHA256(secret, NAME + "\n" + EXP))
//
// EXP is the expiry in unix seconds as a decimal number, "0" for a key that never expires. A
// publisher passes it as the query "key=KEY" (and "exp=EXP" when EXP is not 0) on the RTMP
// stream key or app, or on the RTSP URL. The same key can be made with openssl:
//
//	printf '%s\n%s' live/cam1 0 | openssl dgst -sha256 -hmac "$SECRET" -hex
package pubauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"strconv"
	"time"
)

// Errors of Check. Every error Check returns wraps one of them.
var (
	ErrNoKey    = errors.New("publish key missing")
	ErrBadKey   = errors.New("publish key wrong")
	ErrExpired  = errors.New("publish key expired")
	ErrNoSecret = errors.New("no publish secret")
)

// maxQuery bounds the query Check reads; a key and an expiry take under 100 bytes.
const maxQuery = 4096

// Sign returns the publish key of name under secret, valid until exp (unix seconds; 0 = forever).
func Sign(secret, name string, exp int64) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(name))
	m.Write([]byte{'\n'})
	m.Write(strconv.AppendInt(nil, exp, 10))
	return hex.EncodeToString(m.Sum(nil))
}

// Query returns the query a publisher appends: "key=KEY" or "key=KEY&exp=EXP".
func Query(secret, name string, exp int64) string {
	q := "key=" + Sign(secret, name, exp)
	if exp != 0 {
		q += "&exp=" + strconv.FormatInt(exp, 10)
	}
	return q
}

// Check reports whether rawQuery (without the '?') carries a valid, unexpired key for name
// under secret at time now. An empty secret is an error (ErrNoSecret): a caller that leaves
// publishing open must not call Check. The key is compared in constant time.
func Check(secret, name, rawQuery string, now time.Time) error {
	if secret == "" {
		return ErrNoSecret
	}
	if len(rawQuery) > maxQuery {
		return ErrBadKey
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return ErrBadKey
	}
	keys, exps := q["key"], q["exp"]
	if len(keys) == 0 || keys[0] == "" {
		return ErrNoKey
	}
	if len(keys) != 1 || len(exps) > 1 {
		return ErrBadKey
	}
	var exp int64
	if len(exps) == 1 {
		// Decimal digits only: "+5" or "05" would sign differently from what Sign wrote.
		s := exps[0]
		if s == "" || len(s) > 19 || (s[0] == '0' && len(s) > 1) {
			return ErrBadKey
		}
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return ErrBadKey
			}
		}
		if exp, err = strconv.ParseInt(s, 10, 64); err != nil {
			return ErrBadKey
		}
	}
	got, err := hex.DecodeString(keys[0])
	if err != nil || len(got) != sha256.Size {
		return ErrBadKey
	}
	want, _ := hex.DecodeString(Sign(secret, name, exp))
	if !hmac.Equal(got, want) {
		return ErrBadKey
	}
	if exp != 0 && now.Unix() >= exp {
		return ErrExpired
	}
	return nil
}

// Authorizer returns the check a listener's Authorize field takes: Check under secret at the
// current time. With no secret it returns nil, which listeners read as "anyone may publish".
func Authorizer(secret string) func(name, query string) error {
	if secret == "" {
		return nil
	}
	return func(name, query string) error { return Check(secret, name, query, time.Now()) }
}

// OpenWarning is the line each binary logs at start when no publish secret is set.
const OpenWarning = "auth.publish_secret not set: anyone who reaches a publish port can publish any stream"
