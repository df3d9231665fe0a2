package rtmpgw

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"

	"github.com/peergate/peergate/gateway/gwmetrics"
)

// clientBytes is what a plain client sends: C0, C1, C2 (the gateway does not check their
// content) and then the given commands, chunked at the default 128 bytes.
func clientBytes(cmds ...amf0.Data) []byte {
	var buf bytes.Buffer
	buf.WriteByte(3)
	buf.Write(make([]byte, 2*1536))
	w := rawmessage.NewWriter(&buf, bytecounter.NewWriter(io.Discard), false)
	for i, d := range cmds {
		body, err := d.Marshal()
		if err != nil {
			panic(err)
		}
		msid := uint32(0)
		if name := d[0].(string); name == "play" || name == "publish" {
			msid = 1
		}
		if err := w.Write(&rawmessage.Message{ChunkStreamID: byte(3 + i%2), Type: typeCommandAMF0, MessageStreamID: wireID(msid), Body: body}); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

func connectCmd(app string, capsEx float64) amf0.Data {
	return amf0.Data{"connect", float64(1), amf0.Object{
		{Key: "app", Value: app}, {Key: "tcUrl", Value: "rtmp://gw/" + app}, {Key: "flashVer", Value: "FMLE/3.0"}, {Key: "capsEx", Value: capsEx},
	}}
}

// sessionSeeds are whole client transcripts: the hostile inputs of TestHostileInputs and
// well-formed sessions, for FuzzSession.
func sessionSeeds() [][]byte {
	var seeds [][]byte
	for _, c := range hostileCases {
		seeds = append(seeds, c.seed)
	}
	return append(seeds,
		clientBytes(connectCmd("live", 0), amf0.Data{"createStream", float64(2), nil}, amf0.Data{"play", float64(3), nil, "cam1?token=t"}),
		clientBytes(connectCmd("static?key=k", 1), amf0.Data{"releaseStream", float64(2), nil, "demo"},
			amf0.Data{"FCPublish", float64(3), nil, "demo"}, amf0.Data{"createStream", float64(4), nil},
			amf0.Data{"publish", float64(5), nil, "demo", "live"}),
		clientBytes(connectCmd("live", 0), amf0.Data{"play", float64(3), nil, ".."}),
		clientBytes(connectCmd("live/cam1", 0), amf0.Data{"play", float64(3), nil, ""}),
		clientBytes(amf0.Data{"play", float64(3), nil, "x"}),
		clientBytes(amf0.Data{"connect", float64(1), "not an object"}),
	)
}

// FuzzSession feeds whole client transcripts to a redirecting gateway over a pipe: whatever
// arrives, the session ends (no hang, no panic) and any redirect it writes names the registry's
// origin only.
func FuzzSession(f *testing.F) {
	for _, s := range sessionSeeds() {
		f.Add(s)
	}
	s := &Server{Resolver: &fakeResolver{base: "rtmp://origin.example:1936"}, Mode: ModeRedirect,
		HandshakeTimeout: 2 * time.Second, MaxSetupBytes: DefaultMaxSetupBytes, Logger: discardLogger(), Metrics: gwmetrics.Nop{}}
	f.Fuzz(func(t *testing.T, in []byte) {
		srv, cli := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer srv.Close()
			s.session(srv, &connLog{})
		}()
		var out bytes.Buffer
		read := make(chan struct{})
		go func() {
			defer close(read)
			_, _ = io.Copy(&out, cli)
		}()
		_ = cli.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = cli.Write(in)
		cli.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end")
		}
		<-read
		if i := bytes.Index(out.Bytes(), []byte("rtmp://")); i >= 0 && !bytes.HasPrefix(out.Bytes()[i:], []byte("rtmp://origin.example:1936/")) {
			t.Fatalf("redirect outside the registry: %q", out.Bytes()[i:])
		}
	})
}
