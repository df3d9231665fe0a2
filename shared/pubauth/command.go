package pubauth

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/peergate/peergate/shared/streamname"
)

// SecretEnv is the variable KeyCommand reads the secret from (the auth.publish_secret key).
const SecretEnv = "PEERGATE_AUTH_PUBLISH_SECRET"

// KeyCommand is "gateway publish-key -name NAME [-exp 24h]": it prints the query a publisher
// appends ("key=...[&exp=...]"), signed with the secret from SecretEnv in env. -exp 0 (the
// default) makes a key that never expires.
func KeyCommand(args, env []string, now time.Time, out io.Writer) error {
	fs := flag.NewFlagSet("publish-key", flag.ContinueOnError)
	fs.SetOutput(out)
	name := fs.String("name", "", "stream NAME, e.g. live/cam1 (required)")
	exp := fs.Duration("exp", 0, "validity from now, e.g. 24h; 0 = never expires")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if !streamname.Valid(*name) {
		return fmt.Errorf("-name %q is not a valid stream NAME", *name)
	}
	if *exp < 0 {
		return errors.New("-exp must not be negative")
	}
	var secret string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, SecretEnv+"="); ok {
			secret = v
		}
	}
	if secret == "" {
		return fmt.Errorf("%s is not set (the same auth.publish_secret as the gateways and origins)", SecretEnv)
	}
	var unix int64
	if *exp > 0 {
		unix = now.Add(*exp).Unix()
	}
	_, err := fmt.Fprintln(out, Query(secret, *name, unix))
	return err
}

// TokenCommand is "gateway token NAME [-ttl 1h] [-ip ADDR]": it prints the query a player
// appends ("token=...[&ip=...]"), signed with the secret from PlaySecretEnv in env and valid
// for -ttl from now (default one hour); -ip binds it to one client address.
func TokenCommand(args, env []string, now time.Time, out io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(out)
	ttl := fs.Duration("ttl", time.Hour, "validity from now, e.g. 30m")
	ip := fs.String("ip", "", "bind the token to this client address (IPv4 or IPv6)")
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: gateway token NAME [-ttl 1h] [-ip ADDR]")
		fs.PrintDefaults()
	}
	// NAME may come before or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if name == "" && len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	if len(rest) != 0 {
		return fmt.Errorf("unexpected argument %q", rest[0])
	}
	if !streamname.Valid(name) {
		return fmt.Errorf("NAME %q is not a valid stream NAME", name)
	}
	if *ttl <= 0 {
		return errors.New("-ttl must be positive")
	}
	if *ip != "" {
		a, err := netip.ParseAddr(*ip)
		if err != nil || a.Zone() != "" {
			return fmt.Errorf("-ip %q is not an IP address", *ip)
		}
		*ip = a.Unmap().String()
	}
	var secret string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, PlaySecretEnv+"="); ok {
			secret = v
		}
	}
	if secret == "" {
		return fmt.Errorf("%s is not set (the same auth.play_secret as the gateways and origins)", PlaySecretEnv)
	}
	exp := max(now.Add(*ttl).Unix(), now.Unix()+1)
	_, err := fmt.Fprintln(out, TokenQuery(secret, name, exp, *ip))
	return err
}
