package rtspgw

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// maxFrame is the largest interleaved frame the format can carry: '$', channel, 16-bit length.
const maxFrame = 4 + 0xffff

// Read buffers of a relay's two directions; one whole frame must fit for Peek. The
// publisher's direction carries the media: a larger buffer means fewer, larger reads and
// writes when the relay falls behind (measured: relay/copy from about 0.65 to 0.8 on
// loopback). The origin's direction carries answers and RTCP reports.
const (
	relayBufSize     = 256 << 10
	relayBackBufSize = 72 << 10
)

// unit is what a framer hands out: a run of whole interleaved frames or one RTSP message.
type unit uint8

const (
	unitFrames  unit = iota + 1 // one or more whole '$' frames, back to back
	unitMessage                 // one RTSP request or response: start line, headers, body
)

var (
	errTooLarge      = errors.New("message too large")
	errContentLength = errors.New("bad Content-Length")
)

// framer splits one side's byte stream into interleaved frames and RTSP messages, the way
// RFC 2326 section 10.12 lays them out. It never buffers more than its bufio.Reader and one
// message of at most max bytes; frames are handed out as slices of the reader's buffer.
type framer struct {
	br      *bufio.Reader
	max     int    // cap on a message: start line, headers and body
	msg     []byte // the last message, reused
	discard int    // bytes of the last frame run still to drop from br
}

// next returns the next unit. The slice is valid until the following call.
func (f *framer) next() (unit, []byte, error) {
	if f.discard > 0 {
		_, _ = f.br.Discard(f.discard)
		f.discard = 0
	}
	b, err := f.br.Peek(1)
	if err != nil {
		return 0, nil, err
	}
	if b[0] != '$' {
		m, err := f.message()
		return unitMessage, m, err
	}
	buf, _ := f.br.Peek(f.br.Buffered())
	n := wholeFrames(buf)
	if n == 0 {
		// One frame not yet whole: wait for it (it fits in the buffer by construction).
		h, err := f.br.Peek(4)
		if err != nil {
			return 0, nil, unexpected(err)
		}
		n = 4 + (int(h[2])<<8 | int(h[3]))
		if buf, err = f.br.Peek(n); err != nil {
			return 0, nil, unexpected(err)
		}
	}
	f.discard = n
	return unitFrames, buf[:n], nil
}

// wholeFrames is the length of the longest prefix of b made of whole interleaved frames.
func wholeFrames(b []byte) int {
	i := 0
	for len(b)-i >= 4 && b[i] == '$' {
		l := 4 + (int(b[i+2])<<8 | int(b[i+3]))
		if len(b)-i < l {
			break
		}
		i += l
	}
	return i
}

// message reads one RTSP message: lines up to an empty one, then Content-Length bytes, at
// most f.max in all. Empty lines before the start line are skipped (keep-alive CRLFs).
func (f *framer) message() ([]byte, error) {
	f.msg = f.msg[:0]
	lineStart := 0
	for {
		line, err := f.br.ReadSlice('\n')
		if len(f.msg)+len(line) > f.max {
			return nil, errTooLarge
		}
		f.msg = append(f.msg, line...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if len(f.msg) > 0 {
				return nil, unexpected(err)
			}
			return nil, err
		}
		l := f.msg[lineStart:]
		if len(l) <= 2 && (len(l) == 1 || l[0] == '\r') {
			if lineStart == 0 {
				f.msg = f.msg[:0] // a blank line before the message
				continue
			}
			break
		}
		lineStart = len(f.msg)
	}
	n, err := contentLength(f.msg)
	if err != nil {
		return nil, err
	}
	if n > f.max-len(f.msg) {
		return nil, errTooLarge
	}
	h := len(f.msg)
	f.msg = append(f.msg, make([]byte, n)...)
	if _, err := io.ReadFull(f.br, f.msg[h:]); err != nil {
		return nil, unexpected(err)
	}
	return f.msg, nil
}

// contentLength finds the one Content-Length header of a message head (keys compared the
// way gortsplib's parser does: up to ':', case-insensitive, leading spaces of the value
// dropped). Two of them, or a value that is not a plain number, is an error.
func contentLength(head []byte) (int, error) {
	n, found := 0, false
	for i, line := range bytes.Split(head, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if i == 0 || !ok || !strings.EqualFold(string(k), "content-length") {
			continue
		}
		if found {
			return 0, errContentLength
		}
		found = true
		v = bytes.TrimLeft(bytes.TrimSuffix(v, []byte("\r")), " ")
		x, err := strconv.ParseUint(string(v), 10, 31)
		if err != nil {
			return 0, errContentLength
		}
		n = int(x)
	}
	return n, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseWhole parses b with u (a *base.Request or *base.Response) and checks the parser used
// exactly the bytes the framer cut, so what is forwarded is what was framed.
func parseWhole(b []byte, u interface{ Unmarshal(*bufio.Reader) error }) error {
	r := bytes.NewReader(b)
	br := bufio.NewReaderSize(r, len(b)+16)
	if err := u.Unmarshal(br); err != nil {
		return err
	}
	if br.Buffered() != 0 || r.Len() != 0 {
		return fmt.Errorf("%d bytes after the message", br.Buffered()+r.Len())
	}
	return nil
}

// tcpTransport reports whether a SETUP Transport header offers interleaved TCP in any of
// its alternatives (a "/TCP" lower transport or an interleaved= parameter).
func tcpTransport(values []string) bool {
	for _, v := range values {
		for alt := range strings.SplitSeq(v, ",") {
			spec, params, _ := strings.Cut(strings.TrimSpace(alt), ";")
			if len(spec) >= 4 && strings.EqualFold(spec[len(spec)-4:], "/TCP") {
				return true
			}
			for p := range strings.SplitSeq(params, ";") {
				if k, _, _ := strings.Cut(strings.TrimSpace(p), "="); strings.EqualFold(k, "interleaved") {
					return true
				}
			}
		}
	}
	return false
}

// swapPrefix replaces every URL in s that starts with from (followed by the end, '/', '?',
// ';', ',' or a space, so "rtsp://h:855" does not match "rtsp://h:8555") with to.
func swapPrefix(s, from, to string) string {
	if from == "" || !strings.Contains(s, from) {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, from)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := i + len(from)
		b.WriteString(s[:i])
		if j == len(s) || strings.IndexByte("/?;, ", s[j]) >= 0 {
			b.WriteString(to)
		} else {
			b.WriteString(from)
		}
		s = s[j:]
	}
}
