package rtmpsrv

import (
	"net/url"
	"strings"

	"github.com/peergate/peergate/shared/streamname"
)

// nameFromURL recovers NAME ("APP/STREAM") and the query from the URL gortmplib joins from
// the connect tcUrl and the play/publish stream key. A token on the app
// ("rtmp://h/live?tok=1" + "cam1") ends up as "path=/live, query=tok=1/cam1": the part
// after the first slash of the query is the stream key.
func nameFromURL(u *url.URL) (name, query string, ok bool) {
	if u == nil {
		return "", "", false
	}
	p := strings.TrimPrefix(u.Path, "/")
	q := u.RawQuery
	if i := strings.IndexByte(q, '/'); i >= 0 {
		return streamname.FromRTMP(p+"?"+q[:i], q[i+1:])
	}
	app, stream, found := strings.Cut(p, "/")
	if !found {
		return "", "", false
	}
	if q != "" {
		stream += "?" + q
	}
	// An app may not contain a slash in practice, but a NAME may: keep everything after the
	// first segment as the stream part and let FromRTMP validate the whole.
	return streamname.FromRTMP(app, stream)
}
