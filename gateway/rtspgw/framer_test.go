package rtspgw

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func frame(ch byte, n int) string {
	return "$" + string([]byte{ch, byte(n >> 8), byte(n)}) + strings.Repeat("x", n)
}

const (
	opts     = "OPTIONS rtsp://gw/live/cam1 RTSP/1.0\r\nCSeq: 1\r\n\r\n"
	announce = "ANNOUNCE rtsp://gw/live/cam1 RTSP/1.0\r\nCSeq: 2\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"
)

type framed struct {
	kind unit
	data string
}

// framerCases feed the framer test and seed its fuzz target.
var framerCases = []struct {
	desc string
	in   string
	out  []framed
	err  error // after the units: io.EOF when the input ended cleanly
}{
	{"one request", opts, []framed{{unitMessage, opts}}, io.EOF},
	{"request with a body", announce, []framed{{unitMessage, announce}}, io.EOF},
	{"blank lines before a request", "\r\n\r\n" + opts, []framed{{unitMessage, opts}}, io.EOF},
	{"LF-only lines", "OPTIONS * RTSP/1.0\nCSeq: 1\n\n", []framed{{unitMessage, "OPTIONS * RTSP/1.0\nCSeq: 1\n\n"}}, io.EOF},
	{"lower-case content-length", "X * RTSP/1.0\r\ncontent-length:  2\r\n\r\nab", []framed{{unitMessage, "X * RTSP/1.0\r\ncontent-length:  2\r\n\r\nab"}}, io.EOF},
	{"frames back to back come as one run", frame(0, 10) + frame(1, 3), []framed{{unitFrames, frame(0, 10) + frame(1, 3)}}, io.EOF},
	{"an empty frame", frame(0, 0), []framed{{unitFrames, frame(0, 0)}}, io.EOF},
	{"the largest frame", frame(0, 0xffff), []framed{{unitFrames, frame(0, 0xffff)}}, io.EOF},
	{"frames then a request", frame(0, 5) + opts + frame(1, 2), []framed{{unitFrames, frame(0, 5)}, {unitMessage, opts}, {unitFrames, frame(1, 2)}}, io.EOF},
	{"a response between frames", frame(0, 1) + "RTSP/1.0 200 OK\r\nCSeq: 3\r\n\r\n", []framed{{unitFrames, frame(0, 1)}, {unitMessage, "RTSP/1.0 200 OK\r\nCSeq: 3\r\n\r\n"}}, io.EOF},
	{"a frame cut short", frame(0, 100)[:20], nil, io.ErrUnexpectedEOF},
	{"a frame header cut short", "$\x00", nil, io.ErrUnexpectedEOF},
	{"a message cut short", "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n", nil, io.ErrUnexpectedEOF},
	{"a body cut short", strings.TrimSuffix(announce, "\r\n"), nil, io.ErrUnexpectedEOF},
	{"a request line over the cap", "ANNOUNCE rtsp://gw/" + strings.Repeat("a", 5000) + " RTSP/1.0\r\n\r\n", nil, errTooLarge},
	{"headers over the cap", "OPTIONS * RTSP/1.0\r\n" + strings.Repeat("X-Pad: aaaaaaaa\r\n", 300) + "\r\n", nil, errTooLarge},
	{"a body over the cap", "ANNOUNCE * RTSP/1.0\r\nContent-Length: 5000\r\n\r\n", nil, errTooLarge},
	{"a huge Content-Length", "ANNOUNCE * RTSP/1.0\r\nContent-Length: 99999999999999999999\r\n\r\n", nil, errContentLength},
	{"two Content-Lengths", "ANNOUNCE * RTSP/1.0\r\nContent-Length: 1\r\nContent-length: 2\r\n\r\nab", nil, errContentLength},
	{"a Content-Length that is not a number", "ANNOUNCE * RTSP/1.0\r\nContent-Length: -1\r\n\r\n", nil, errContentLength},
	{"garbage then nothing", "\x16\x03\x01\x02\x00", nil, io.ErrUnexpectedEOF},
}

func TestFramer(t *testing.T) {
	for _, c := range framerCases {
		for _, size := range []int{16, relayBufSize} {
			if size < maxFrame && strings.HasPrefix(c.in, "$") {
				continue // a relay reader always fits a whole frame
			}
			f := &framer{br: bufio.NewReaderSize(strings.NewReader(c.in), size), max: 4096}
			var got []framed
			var err error
			for {
				var k unit
				var b []byte
				if k, b, err = f.next(); err != nil {
					break
				}
				got = append(got, framed{k, string(b)})
			}
			if len(got) != len(c.out) {
				t.Fatalf("%s (buffer %d): %d units, want %d", c.desc, size, len(got), len(c.out))
			}
			for i := range got {
				if got[i] != c.out[i] {
					t.Fatalf("%s (buffer %d): unit %d = %v %q, want %v %q", c.desc, size, i, got[i].kind, got[i].data, c.out[i].kind, c.out[i].data)
				}
			}
			if !errors.Is(err, c.err) {
				t.Fatalf("%s (buffer %d): error %v, want %v", c.desc, size, err, c.err)
			}
		}
	}
}

func TestTCPTransport(t *testing.T) {
	for _, c := range []struct {
		tr  string
		tcp bool
	}{
		{"RTP/AVP/TCP;unicast;interleaved=0-1;mode=record", true},
		{"RTP/AVP/UDP;unicast;client_port=5000-5001;mode=record", false},
		{"RTP/AVP;unicast;client_port=5000-5001", false},
		{"RTP/AVP;multicast", false},
		{"RTP/SAVP/TCP;unicast;interleaved=0-1", true},
		{"rtp/avp/tcp;unicast", true},
		{"RTP/AVP;interleaved=2-3", true},
		{"RTP/AVP;unicast;client_port=5000-5001, RTP/AVP/TCP;unicast;interleaved=0-1", true},
		{"", false},
	} {
		if got := tcpTransport([]string{c.tr}); got != c.tcp {
			t.Errorf("tcpTransport(%q) = %v", c.tr, got)
		}
	}
	if tcpTransport(nil) {
		t.Error("no Transport header counted as TCP")
	}
}

func TestSwapPrefix(t *testing.T) {
	const from, to = "rtsp://o1:8555", "rtsp://gw:8554"
	for _, c := range []struct{ in, out string }{
		{"rtsp://o1:8555/live/cam1/", "rtsp://gw:8554/live/cam1/"},
		{"rtsp://o1:8555", "rtsp://gw:8554"},
		{"url=rtsp://o1:8555/a/trackID=0;seq=1,url=rtsp://o1:8555/a/trackID=1;seq=2", "url=rtsp://gw:8554/a/trackID=0;seq=1,url=rtsp://gw:8554/a/trackID=1;seq=2"},
		{"rtsp://o1:85555/x", "rtsp://o1:85555/x"},
		{"rtsp://o1:8555.evil.com/x", "rtsp://o1:8555.evil.com/x"},
		{"rtsp://other:8555/x", "rtsp://other:8555/x"},
	} {
		if got := swapPrefix(c.in, from, to); got != c.out {
			t.Errorf("swapPrefix(%q) = %q, want %q", c.in, got, c.out)
		}
	}
}

// The origin's Content-Base and RTP-Info point the client back at the gateway.
func TestResponseRewrite(t *testing.T) {
	r := &relay{orBase: "rtsp://127.0.0.1:8555", gwBase: "rtsp://gw.example:8554"}
	in := "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Base: rtsp://127.0.0.1:8555/live/cam1/\r\n" +
		"RTP-Info: url=rtsp://127.0.0.1:8555/live/cam1/trackID=0;seq=1\r\n\r\n"
	out, err := r.response([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("127.0.0.1:8555")) || !bytes.Contains(out, []byte("Content-Base: rtsp://gw.example:8554/live/cam1/\r\n")) ||
		!bytes.Contains(out, []byte("url=rtsp://gw.example:8554/live/cam1/trackID=0;seq=1")) {
		t.Fatalf("%q", out)
	}
	plain := "RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 12345678\r\n\r\n"
	if out, _ := r.response([]byte(plain)); string(out) != plain {
		t.Fatalf("a response without the origin's URL changed: %q", out)
	}
}
