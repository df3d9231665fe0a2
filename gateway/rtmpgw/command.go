package rtmpgw

import (
	"errors"
	"math"

	"github.com/bluenviron/gortmplib/pkg/amf0"
)

// capsExReconnect is the Enhanced RTMP v2 capsEx bit of a client that follows
// NetConnection.Connect.ReconnectRequest.
const capsExReconnect = 0x01

// command is one AMF0 command: name, transaction ID and the arguments after them.
type command struct {
	name string
	tx   float64
	args []any
}

var errBadCommand = errors.New("malformed command")

// parseCommand decodes the body of an AMF0 command message (type 20).
func parseCommand(body []byte) (command, error) {
	d, err := amf0.Unmarshal(body)
	if err != nil {
		return command{}, err
	}
	if len(d) < 2 {
		return command{}, errBadCommand
	}
	name, ok := d[0].(string)
	if !ok {
		return command{}, errBadCommand
	}
	tx, ok := d[1].(float64)
	if !ok || math.IsNaN(tx) || math.IsInf(tx, 0) {
		return command{}, errBadCommand
	}
	return command{name: name, tx: tx, args: d[2:]}, nil
}

// connectInfo is what the gateway keeps of a connect command object.
type connectInfo struct {
	app            string
	tcURL          string
	flashVer       string
	capsEx         uint32
	objectEncoding float64
}

// parseConnect reads the command object of connect: app and tcUrl are required strings
// (tcurl is accepted, as some encoders spell it), flashVer, capsEx and objectEncoding optional.
func parseConnect(c command) (connectInfo, error) {
	if c.name != "connect" || len(c.args) < 1 {
		return connectInfo{}, errBadCommand
	}
	obj, ok := objectOf(c.args[0])
	if !ok {
		return connectInfo{}, errBadCommand
	}
	var ci connectInfo
	if ci.app, ok = obj.GetString("app"); !ok {
		return connectInfo{}, errBadCommand
	}
	if ci.tcURL, ok = obj.GetString("tcUrl"); !ok {
		if ci.tcURL, ok = obj.GetString("tcurl"); !ok {
			return connectInfo{}, errBadCommand
		}
	}
	ci.flashVer, _ = obj.GetString("flashVer")
	if v, ok := obj.GetFloat64("capsEx"); ok && v >= 0 && v <= math.MaxUint32 {
		ci.capsEx = uint32(v)
	}
	ci.objectEncoding, _ = obj.GetFloat64("objectEncoding")
	if ci.objectEncoding != 3 {
		ci.objectEncoding = 0
	}
	return ci, nil
}

// followsReconnect reports whether the client announced it follows ReconnectRequest.
func (ci connectInfo) followsReconnect() bool { return ci.capsEx&capsExReconnect != 0 }

// streamArg returns the stream key of a play or publish command: its second argument
// (the first is the null command object).
func streamArg(c command) (string, error) {
	if len(c.args) < 2 {
		return "", errBadCommand
	}
	s, ok := c.args[1].(string)
	if !ok {
		return "", errBadCommand
	}
	return s, nil
}

func objectOf(v any) (amf0.Object, bool) {
	switch o := v.(type) {
	case amf0.Object:
		return o, true
	case amf0.ECMAArray:
		return amf0.Object(o), true
	}
	return nil, false
}

// matchFlashVer reports whether flashVer matches one of the patterns: a pattern matches the
// whole flashVer, '*' standing for any run of characters (none included); no other byte is
// special. "SRS/*" matches every flashVer that starts with "SRS/".
func matchFlashVer(patterns []string, flashVer string) bool {
	for _, p := range patterns {
		if p != "" && glob(p, flashVer) {
			return true
		}
	}
	return false
}

// glob matches s against p where '*' is the only wildcard; it runs in O(len(p)*len(s)) at worst.
func glob(p, s string) bool {
	px, sx := 0, 0
	star, mark := -1, 0
	for sx < len(s) {
		switch {
		case px < len(p) && p[px] == '*':
			star, mark = px, sx
			px++
		case px < len(p) && p[px] == s[sx]:
			px++
			sx++
		case star >= 0:
			px = star + 1
			mark++
			sx = mark
		default:
			return false
		}
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}
