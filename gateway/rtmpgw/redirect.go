package rtmpgw

import (
	"net"
	"net/url"
	"strings"

	"github.com/bluenviron/gortmplib/pkg/amf0"

	"github.com/peergate/peergate/gateway/gwmetrics"
	"github.com/peergate/peergate/shared/streamname"
)

const (
	modeRedirect = gwmetrics.ModeRedirect
	modeRelay    = gwmetrics.ModeRelay
	rolePlay     = gwmetrics.RolePlay
	rolePublish  = gwmetrics.RolePublish

	codeRejected  = "NetConnection.Connect.Rejected"
	codeReconnect = "NetConnection.Connect.ReconnectRequest"
)

// target is where a request goes on the chosen origin, every URL built by
// streamname.Location from the origin's registered base URL.
type target struct {
	scheme string // rtmp or rtmps
	host   string // host:port to dial
	tcURL  string // scheme://host:port/app[?app query]: connect's tcUrl on the origin
	full   string // scheme://host:port/app/stream[?query]: the whole play/publish URL
}

// newTarget builds the origin URLs for req; false when the base URL is not an rtmp(s) origin.
func newTarget(base string, req *request) (target, bool) {
	// The tcUrl carries the client's own app (query included): the origin sees what a direct
	// connection would have shown it.
	app, appQuery, _ := strings.Cut(req.ci.app, "?")
	tc, ok := streamname.Location(base, "/"+app, appQuery)
	if !ok {
		return target{}, false
	}
	app, _, _ = strings.Cut(req.app, "?")
	stream, _, _ := strings.Cut(req.key, "?")
	full, ok := streamname.Location(base, "/"+app+"/"+stream, req.query)
	if !ok {
		return target{}, false
	}
	u, err := url.Parse(tc)
	if err != nil || (u.Scheme != "rtmp" && u.Scheme != "rtmps") {
		return target{}, false
	}
	host := u.Host
	if u.Port() == "" {
		port := "1935"
		if u.Scheme == "rtmps" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	return target{scheme: u.Scheme, host: host, tcURL: tc, full: full}, true
}

// redirectMessages are the onStatus commands (transaction 0, message stream 0) that send a
// client to t: the Enhanced RTMP v2 ReconnectRequest first for clients that set the reconnect
// bit of capsEx, then the SRS-style NetConnection.Connect.Rejected with ex.code 302.
func redirectMessages(t target, reconnect bool) []amf0.Data {
	var out []amf0.Data
	if reconnect {
		out = append(out, amf0.Data{"onStatus", float64(0), nil, amf0.Object{
			{Key: "level", Value: "status"},
			{Key: "code", Value: codeReconnect},
			{Key: "description", Value: "reconnect to " + t.tcURL},
			{Key: "tcUrl", Value: t.tcURL},
		}})
	}
	out = append(out, amf0.Data{"onStatus", float64(0), nil, amf0.Object{
		{Key: "level", Value: "error"},
		{Key: "code", Value: codeRejected},
		{Key: "description", Value: "RTMP 302 Redirect"},
		{Key: "ex", Value: amf0.Object{
			{Key: "code", Value: float64(302)},
			{Key: "redirect", Value: t.tcURL},
			{Key: "redirect2", Value: t.full},
		}},
	}})
	return out
}

// redirect writes the redirect messages to the client.
func (s *Server) redirect(client *side, req *request, t target) error {
	for _, d := range redirectMessages(t, req.ci.followsReconnect()) {
		if err := client.writeCommand(csCommand, 0, d[0].(string), d[1].(float64), d[2:]...); err != nil {
			return err
		}
	}
	return nil
}
