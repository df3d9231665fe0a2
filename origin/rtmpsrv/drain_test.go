package rtmpsrv

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/gortsplib/v5/pkg/format"

	"github.com/peergate/peergate/internal/rtmptest"
	"github.com/peergate/peergate/origin/media"
)

var testPPS = []byte{0x68, 0xee, 0x3c, 0x80}

// feed publishes an H.264 stream into tbl until the test ends: a key frame a second, 25 fps.
func feed(t *testing.T, tbl *media.Table, name string) {
	t.Helper()
	st, err := tbl.Publish(name, []*media.Track{{Format: &format.H264{PayloadTyp: 96, SPS: sps640(), PPS: testPPS, PacketizationMode: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(40 * time.Millisecond)
		defer tk.Stop()
		for i := 0; ; i++ {
			nal := []byte{0x41, 0x9a, byte(i)}
			if i%25 == 0 {
				nal = []byte{0x65, 0x88, byte(i)}
			}
			pts := time.Duration(i) * 40 * time.Millisecond
			st.WriteUnit(media.Unit{Track: 0, PTS: pts, DTS: pts, AU: [][]byte{nal}})
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait(); st.Close() })
}

// sps640 is an H.264 SPS (640x360, High profile).
func sps640() []byte {
	return []byte{0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestDrainAsksReconnectingPlayers: on Drain, the player that set the reconnect bit of
// capsEx gets NetConnection.Connect.ReconnectRequest with a tcUrl on ReconnectURL and its own
// app, and keeps receiving media until it leaves; the player without the bit gets nothing
// and keeps playing; a player that starts during the drain is asked at once; each request
// is counted.
func TestDrainAsksReconnectingPlayers(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	s := &Server{Address: "127.0.0.1:0", Table: tbl, ReconnectURL: "rtmp://gw.example:1935/"}
	if err := s.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	feed(t, tbl, "live/d")
	base := "rtmp://" + s.Addr().String() + "/live/d"

	follows, err := rtmptest.Play(base, rtmptest.CapsExReconnect, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer follows.Close()
	plain, err := rtmptest.Play(base, 0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()

	// Both players registered before the drain (the log line comes after registration).
	if !waitFor(10*time.Second, func() bool { s.players.mu.Lock(); defer s.players.mu.Unlock(); return len(s.players.all) == 2 }) {
		t.Fatal("players never registered")
	}
	if n := s.Drain(); n != 1 {
		t.Fatalf("Drain asked %d players, want 1", n)
	}
	st, _, err := follows.Next(10 * time.Second)
	if err != nil || st.Code != "NetConnection.Connect.ReconnectRequest" || st.TCURL != "rtmp://gw.example:1935/live" {
		t.Fatalf("reconnecting player got %+v, %v; want ReconnectRequest to rtmp://gw.example:1935/live", st, err)
	}
	// Still served after the request; the other player is left alone.
	for name, p := range map[string]*rtmptest.Player{"reconnecting": follows, "plain": plain} {
		st, n, err := p.Next(2 * time.Second)
		if !isTimeout(err) || n == 0 {
			t.Errorf("%s player after the drain: status %+v, %d media messages, err %v; want media and no status", name, st, n, err)
		}
	}

	late, err := rtmptest.Play(base, rtmptest.CapsExReconnect, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	if st, _, err := late.Next(10 * time.Second); err != nil || st.Code != "NetConnection.Connect.ReconnectRequest" {
		t.Fatalf("player starting during the drain got %+v, %v", st, err)
	}
	// Counted right after the write the player just read.
	if !waitFor(10*time.Second, func() bool { return s.ReconnectRequests() == 2 }) {
		t.Fatalf("ReconnectRequests %d, want 2", s.ReconnectRequests())
	}
}

func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// connectBytes is what a client sends up to connect: a plain handshake and the command.
func connectBytes(t testing.TB, obj amf0.Object, chunkSize uint32) []byte {
	var buf bytes.Buffer
	buf.WriteByte(3)
	buf.Write(make([]byte, 2*1536))
	w := message.NewWriter(&buf, bytecounter.NewWriter(&buf), false)
	if chunkSize != 0 {
		// Writing it sets the writer's chunk size too.
		if err := w.Write(&message.SetChunkSize{Value: chunkSize}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Write(&message.CommandAMF0{ChunkStreamID: 3, Name: "connect", CommandID: 1, Arguments: []any{obj}}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var connectTable = []struct {
	name   string
	obj    amf0.Object
	chunk  uint32
	caps   uint32
	app    string
	broken bool // not a plain handshake
}{
	{"with capsEx", amf0.Object{{Key: "app", Value: "live"}, {Key: "tcUrl", Value: "rtmp://o/live"}, {Key: "capsEx", Value: float64(1)}}, 0, 1, "live", false},
	{"no capsEx", amf0.Object{{Key: "app", Value: "live"}, {Key: "tcUrl", Value: "rtmp://o/live"}}, 0, 0, "live", false},
	{"big chunks", amf0.Object{{Key: "app", Value: "a/b?x=1"}, {Key: "capsEx", Value: float64(3)}, {Key: "pad", Value: string(make([]byte, 300))}}, 4096, 3, "a/b?x=1", false},
	{"negative capsEx", amf0.Object{{Key: "app", Value: "live"}, {Key: "capsEx", Value: float64(-1)}}, 0, 0, "live", false},
	{"encrypted handshake", nil, 0, 0, "", true},
}

// TestParseConnect: capsEx and app are read back from the bytes of a plain handshake and the
// connect command, across chunk sizes; anything else reads as no capsEx.
func TestParseConnect(t *testing.T) {
	for _, c := range connectTable {
		var b []byte
		if c.broken {
			b = append([]byte{6}, make([]byte, 4000)...)
		} else {
			b = connectBytes(t, c.obj, c.chunk)
		}
		caps, app := parseConnect(b)
		if caps != c.caps || app != c.app {
			t.Errorf("%s: capsEx %d app %q, want %d %q", c.name, caps, app, c.caps, c.app)
		}
		if caps, _ := parseConnect(b[:len(b)-1]); caps != 0 {
			t.Errorf("%s: truncated connect read capsEx %d", c.name, caps)
		}
	}
}

func FuzzParseConnect(f *testing.F) {
	for _, c := range connectTable {
		if !c.broken {
			f.Add(connectBytes(f, c.obj, c.chunk))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		parseConnect(b) // never panics
	})
}
