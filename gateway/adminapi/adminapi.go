// Package adminapi serves the gateway's JSON view of the cluster (/api/v1/origins, /api/v1/streams,
// /api/v1/tree, /api/v1/explain) and a read-only console page over it (/) on the admin listener.
package adminapi

import (
	"net"
	"net/http"
	"strconv"

	"github.com/peergate/peergate/gateway/resolve"
	"github.com/peergate/peergate/shared/admin"
	"github.com/peergate/peergate/shared/streamname"
)

// View is what the API reads; resolve.Table implements it.
type View interface {
	Origins() []resolve.OriginInfo
	Streams() []resolve.StreamInfo
	Explain(req resolve.Request) resolve.Explanation
	Tree(name string) (resolve.Tree, bool)
}

var _ View = (*resolve.Table)(nil)

// maxClientLen bounds the client key an operator may pass to explain.
const maxClientLen = 256

// maxInFlight bounds API answers built at once; each copies and encodes the whole index.
const maxInFlight = 4

// RTMPPolicy is the gateway's RTMP mode (config rtmp.mode and rtmp.follow_flashver), shown by
// explain for proto=rtmp.
type RTMPPolicy struct {
	Mode           string   `json:"mode"`
	FollowFlashVer []string `json:"follow_flashver"`
	Redirect       string   `json:"redirect"` // which clients get a redirect
	Relay          string   `json:"relay"`    // which clients are relayed
}

// NewRTMPPolicy describes mode ("auto", "redirect" or "relay") for operators.
func NewRTMPPolicy(mode string, followFlashVer []string) *RTMPPolicy {
	p := &RTMPPolicy{Mode: mode, FollowFlashVer: followFlashVer}
	if p.FollowFlashVer == nil {
		p.FollowFlashVer = []string{}
	}
	switch mode {
	case "redirect":
		p.Redirect, p.Relay = "every client", "none"
	case "relay":
		p.Redirect, p.Relay = "none", "every client"
	default:
		p.Redirect = "clients that set the reconnect bit (0x01) of capsEx in connect (Enhanced RTMP v2), or whose flashVer matches follow_flashver"
		p.Relay = "every other client (FFmpeg, OBS, GStreamer, librtmp follow no RTMP redirect)"
	}
	return p
}

// explainAnswer is explain's JSON: the resolver's explanation, plus the RTMP policy for proto=rtmp.
type explainAnswer struct {
	resolve.Explanation
	RTMP *RTMPPolicy `json:"rtmp,omitempty"`
}

// Handlers returns the routes to mount on the admin listener.
func Handlers(v View) map[string]http.Handler { return HandlersWith(v, nil) }

// HandlersWith is Handlers with the gateway's RTMP policy, shown by explain for proto=rtmp.
func HandlersWith(v View, rtmp *RTMPPolicy) map[string]http.Handler {
	sem := make(chan struct{}, maxInFlight)
	limited := func(h http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				h(w, r)
			default:
				admin.WriteError(w, http.StatusServiceUnavailable, "too many API requests in flight")
			}
		})
	}
	return map[string]http.Handler{
		// The console page (console.go); {$} keeps every other path a 404.
		"GET /{$}": http.HandlerFunc(serveConsole),
		"GET /api/v1/origins": limited(func(w http.ResponseWriter, _ *http.Request) {
			admin.WriteJSON(w, http.StatusOK, map[string]any{"origins": v.Origins()})
		}),
		"GET /api/v1/streams": limited(func(w http.ResponseWriter, r *http.Request) {
			all := v.Streams()
			// ?name= narrows the list to one stream so big clusters stay browsable.
			if name := r.URL.Query().Get("name"); name != "" {
				out := []resolve.StreamInfo{}
				for _, s := range all {
					if s.Name == name {
						out = append(out, s)
					}
				}
				all = out
			}
			admin.WriteJSON(w, http.StatusOK, map[string]any{"streams": all})
		}),
		// The relay tree of one stream: owners, the relays pulling from each, relays of relays.
		"GET /api/v1/tree": limited(func(w http.ResponseWriter, r *http.Request) {
			name, msg := treeName(r)
			if msg != "" {
				admin.WriteError(w, http.StatusBadRequest, msg)
				return
			}
			tr, ok := v.Tree(name)
			if !ok {
				admin.WriteError(w, http.StatusNotFound, "no origin lists the stream")
				return
			}
			admin.WriteJSON(w, http.StatusOK, tr)
		}),
		"GET /api/v1/explain": limited(func(w http.ResponseWriter, r *http.Request) {
			req, msg := explainRequest(r)
			if msg != "" {
				admin.WriteError(w, http.StatusBadRequest, msg)
				return
			}
			ans := explainAnswer{Explanation: v.Explain(req)}
			if req.Proto == resolve.ProtoRTMP {
				ans.RTMP = rtmp
			}
			admin.WriteJSON(w, http.StatusOK, ans)
		}),
	}
}

// treeName reads the tree's name parameter.
func treeName(r *http.Request) (string, string) {
	name := r.URL.Query().Get("name")
	switch {
	case name == "":
		return "", "name: required"
	case !streamname.Valid(name):
		return "", "name: not a valid stream name"
	}
	return name, ""
}

// explainRequest reads name, proto (default http), client (default the caller's address) and secure.
func explainRequest(r *http.Request) (resolve.Request, string) {
	q := r.URL.Query()
	req := resolve.Request{Name: q.Get("name"), Client: q.Get("client")}
	if req.Name == "" {
		return req, "name: required"
	}
	if !streamname.Valid(req.Name) {
		return req, "name: not a valid stream name"
	}
	proto := q.Get("proto")
	if proto == "" {
		proto = "http"
	}
	p, ok := resolve.ParseProto(proto)
	if !ok {
		return req, "proto: must be http, rtsp or rtmp"
	}
	req.Proto = p
	if s := q.Get("secure"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return req, "secure: must be true or false"
		}
		req.Secure = b
	}
	if req.Client == "" {
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			req.Client = host
		}
	}
	if len(req.Client) > maxClientLen {
		return req, "client: too long"
	}
	return req, ""
}
