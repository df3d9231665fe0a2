package rtmpgw

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"
)

func mustMarshal(d amf0.Data) []byte {
	b, err := d.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// commandCases are connect, play and publish bodies as clients send them, and broken ones;
// they seed FuzzCommand.
var commandCases = []struct {
	name    string
	body    []byte
	ok      bool // parseCommand accepts it
	connect *connectInfo
	stream  string // play/publish stream key, if any
}{
	{"ffmpeg connect", mustMarshal(amf0.Data{"connect", float64(1), amf0.Object{
		{Key: "app", Value: "live"}, {Key: "flashVer", Value: "LNX 9,0,124,2"}, {Key: "tcUrl", Value: "rtmp://h:1935/live"},
		{Key: "fpad", Value: false}, {Key: "capabilities", Value: float64(15)}, {Key: "audioCodecs", Value: float64(4071)},
		{Key: "videoCodecs", Value: float64(252)}, {Key: "videoFunction", Value: float64(1)},
	}}), true, &connectInfo{app: "live", tcURL: "rtmp://h:1935/live", flashVer: "LNX 9,0,124,2"}, ""},
	{"obs connect", mustMarshal(amf0.Data{"connect", float64(1), amf0.Object{
		{Key: "app", Value: "live?key=k"}, {Key: "type", Value: "nonprivate"}, {Key: "flashVer", Value: "FMLE/3.0 (compatible; FMSc/1.0)"},
		{Key: "swfUrl", Value: "rtmp://h/live?key=k"}, {Key: "tcUrl", Value: "rtmp://h/live?key=k"},
	}}), true, &connectInfo{app: "live?key=k", tcURL: "rtmp://h/live?key=k", flashVer: "FMLE/3.0 (compatible; FMSc/1.0)"}, ""},
	{"enhanced connect", mustMarshal(amf0.Data{"connect", float64(1), amf0.Object{
		{Key: "app", Value: "static"}, {Key: "tcUrl", Value: "rtmp://h/static"}, {Key: "capsEx", Value: float64(1)},
		{Key: "fourCcList", Value: amf0.StrictArray{"hvc1", "av01"}}, {Key: "objectEncoding", Value: float64(3)},
	}}), true, &connectInfo{app: "static", tcURL: "rtmp://h/static", capsEx: 1, objectEncoding: 3}, ""},
	{"ecma array, tcurl", mustMarshal(amf0.Data{"connect", float64(1), amf0.ECMAArray{
		{Key: "app", Value: "live"}, {Key: "tcurl", Value: "rtmp://h/live"}, {Key: "capsEx", Value: float64(-5)},
	}}), true, &connectInfo{app: "live", tcURL: "rtmp://h/live"}, ""},
	{"connect without app", mustMarshal(amf0.Data{"connect", float64(1), amf0.Object{{Key: "tcUrl", Value: "rtmp://h/live"}}}), true, nil, ""},
	{"connect with numeric app", mustMarshal(amf0.Data{"connect", float64(1), amf0.Object{{Key: "app", Value: float64(1)}, {Key: "tcUrl", Value: "x"}}}), true, nil, ""},
	{"connect without object", mustMarshal(amf0.Data{"connect", float64(1)}), true, nil, ""},
	{"connect with null", mustMarshal(amf0.Data{"connect", float64(1), nil}), true, nil, ""},
	{"play", mustMarshal(amf0.Data{"play", float64(4), nil, "cam1?token=t", float64(-2000)}), true, nil, "cam1?token=t"},
	{"publish", mustMarshal(amf0.Data{"publish", float64(5), nil, "cam1", "live"}), true, nil, "cam1"},
	{"play without key", mustMarshal(amf0.Data{"play", float64(4), nil}), true, nil, ""},
	{"play with numeric key", mustMarshal(amf0.Data{"play", float64(4), nil, float64(7)}), true, nil, ""},
	{"name not a string", mustMarshal(amf0.Data{float64(1), float64(1)}), false, nil, ""},
	{"no transaction", mustMarshal(amf0.Data{"connect"}), false, nil, ""},
	{"transaction not a number", mustMarshal(amf0.Data{"connect", "1"}), false, nil, ""},
	{"empty", nil, false, nil, ""},
	{"truncated string", []byte{0x02, 0x00, 0x07, 'c', 'o', 'n'}, false, nil, ""},
	{"unknown marker", []byte{0x02, 0x00, 0x01, 'c', 0x7f}, false, nil, ""},
	{"deep nesting", []byte(strings.Repeat("\x03\x00\x01a", 200)), false, nil, ""},
}

func TestParseCommand(t *testing.T) {
	for _, c := range commandCases {
		cmd, err := parseCommand(c.body)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok=%v", c.name, err, c.ok)
			continue
		}
		if err != nil {
			continue
		}
		ci, err := parseConnect(cmd)
		switch {
		case c.connect != nil && err != nil:
			t.Errorf("%s: parseConnect: %v", c.name, err)
		case c.connect != nil && ci != *c.connect:
			t.Errorf("%s: parseConnect = %+v, want %+v", c.name, ci, *c.connect)
		case c.connect == nil && cmd.name == "connect" && err == nil:
			t.Errorf("%s: parseConnect accepted %+v", c.name, ci)
		}
		if cmd.name == "play" || cmd.name == "publish" {
			key, err := streamArg(cmd)
			if (err == nil) != (c.stream != "") || key != c.stream {
				t.Errorf("%s: streamArg = %q, %v, want %q", c.name, key, err, c.stream)
			}
		}
	}
}

func TestMatchFlashVer(t *testing.T) {
	for _, c := range []struct {
		patterns []string
		flashVer string
		want     bool
	}{
		{[]string{"SRS/*"}, "SRS/4.0.1(Leo)", true},
		{[]string{"SRS/*"}, "XSRS/4", false},
		{[]string{"*librtmp-redirect*"}, "LNX 9,0,124,2 librtmp-redirect/1", true},
		{[]string{"FMLE/3.0 (compatible; FMSc/1.0)"}, "FMLE/3.0 (compatible; FMSc/1.0)", true},
		{[]string{"FMLE/3.0"}, "FMLE/3.0 (compatible; FMSc/1.0)", false},
		{[]string{"a*b*c"}, "aXXbYYc", true},
		{[]string{"a*b*c"}, "aXXbYY", false},
		{[]string{""}, "", false},
		{[]string{"*"}, "", true},
		{nil, "SRS/4", false},
	} {
		if got := matchFlashVer(c.patterns, c.flashVer); got != c.want {
			t.Errorf("matchFlashVer(%q, %q) = %v", c.patterns, c.flashVer, got)
		}
	}
}

func TestSplitApp(t *testing.T) {
	for _, c := range [][4]string{
		{"live", "cam1", "live", "cam1"},
		{"live/cam1", "", "live", "cam1"},
		{"live/cam1?token=t", "", "live", "cam1?token=t"},
		{"static/demo", "", "static", "demo"},
		{"live", "", "live", ""},
	} {
		if a, k := splitApp(c[0], c[1]); a != c[2] || k != c[3] {
			t.Errorf("splitApp(%q, %q) = %q, %q", c[0], c[1], a, k)
		}
	}
}

// FuzzCommand: no command body makes the parsers panic, and whatever play/publish they accept
// yields either no NAME or a redirect that stays on the origin's host.
func FuzzCommand(f *testing.F) {
	for _, c := range commandCases {
		f.Add(c.body, "live")
	}
	f.Fuzz(func(t *testing.T, body []byte, app string) {
		cmd, err := parseCommand(body)
		if err != nil {
			return
		}
		if ci, err := parseConnect(cmd); err == nil {
			if ci.objectEncoding != 0 && ci.objectEncoding != 3 {
				t.Fatalf("objectEncoding %v", ci.objectEncoding)
			}
			app = ci.app
		}
		key, err := streamArg(cmd)
		if err != nil {
			return
		}
		req := &request{ci: connectInfo{app: app}, key: key}
		req.app, req.key = splitApp(app, key)
		const base = "rtmp://origin.example:1936"
		tg, ok := newTarget(base, req)
		if !ok {
			return
		}
		for _, u := range []string{tg.tcURL, tg.full} {
			pu, err := url.Parse(u)
			if !strings.HasPrefix(u, base+"/") || err != nil || pu.Host != "origin.example:1936" || pu.Scheme != "rtmp" {
				t.Fatalf("redirect %q leaves the origin (%v)", u, err)
			}
		}
		if tg.host != "origin.example:1936" || tg.scheme != "rtmp" {
			t.Fatalf("target %+v", tg)
		}
	})
}

// TestChunksRoundTrip: what side.chunks lays out, gortmplib's chunk reader reads back as the
// same messages, across chunk sizes, empty and multi-chunk bodies and extended timestamps.
func TestChunksRoundTrip(t *testing.T) {
	for _, size := range []uint32{128, 4096, 65536} {
		var buf bytes.Buffer
		sd := &side{chunkSize: size}
		var msgs []*rawmessage.Message
		for i, n := range []int{0, 1, 127, 128, 129, 5000, 300000} {
			for _, ts := range []time.Duration{0, 40 * time.Millisecond, (0xffffff + 5) * time.Millisecond} {
				body := make([]byte, n)
				for j := range body {
					body[j] = byte(j * (i + 1))
				}
				m := &rawmessage.Message{ChunkStreamID: byte(3 + i%5), Type: 9, MessageStreamID: wireID(uint32(i)), Timestamp: ts, Body: body}
				msgs = append(msgs, m)
				buf.Write(sd.chunks(m))
			}
		}
		r := rawmessage.NewReader(&buf, bytecounter.NewReader(&buf), func(uint32) error { return nil })
		if err := r.SetChunkSize(size); err != nil {
			t.Fatal(err)
		}
		for i, want := range msgs {
			got, err := r.Read()
			if err != nil {
				t.Fatalf("chunk size %d, message %d: %v", size, i, err)
			}
			if got.ChunkStreamID != want.ChunkStreamID || got.Type != want.Type || got.MessageStreamID != want.MessageStreamID ||
				got.Timestamp != want.Timestamp || !bytes.Equal(got.Body, want.Body) {
				t.Fatalf("chunk size %d, message %d: got cs %d type %d stream %d ts %v len %d", size, i,
					got.ChunkStreamID, got.Type, got.MessageStreamID, got.Timestamp, len(got.Body))
			}
		}
	}
}
