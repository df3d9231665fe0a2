package pubauth

import (
	"errors"
	"flag"
	"fmt"
	"io"
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
