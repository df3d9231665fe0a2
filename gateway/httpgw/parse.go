package httpgw

import (
	"bufio"
	"bytes"
	"net/http"
)

// parser reads HTTP/1.x request heads from a bufio.Reader without allocating, except the
// request target (one string per request) and forwarding headers (copied into scratch).
// Lines may end in CRLF or LF; obsolete line folding, control bytes in the target or in a
// field, a field name that is no token, a second Host, conflicting Content-Lengths and a
// missing Host on HTTP/1.1 are malformed (400); a head longer than limit is 431; a version
// other than HTTP/1.0 or HTTP/1.1 is 505.
type parser struct {
	limit int    // bytes of request line plus fields
	long  []byte // a line longer than the reader's buffer, assembled
	xbuf  []byte // forwarding header values, the backing of head.xff and head.xfp
}

// head is one parsed request head. Its strings stay valid until the next parse.
type head struct {
	method    string // one of the constants below, or a copy of an unknown token
	target    string
	minor     int  // HTTP/1.minor
	keepAlive bool // the client asked to keep the connection (by default on 1.1)
	body      bool // the request has a body (Content-Length > 0 or Transfer-Encoding)
	expect    bool // Expect was sent
	xfp       string
	xff       []string
	xffOff    [][2]int
}

// headError is a malformed request: the status to answer before closing.
type headError struct {
	status int
	reason string
}

func (e *headError) Error() string { return e.reason }

var (
	errMalformed = &headError{http.StatusBadRequest, "malformed request"}
	errNoHost    = &headError{http.StatusBadRequest, "missing Host"}
	errTooLarge  = &headError{http.StatusRequestHeaderFieldsTooLarge, "request head too large"}
	errVersion   = &headError{http.StatusHTTPVersionNotSupported, "unsupported HTTP version"}
)

// readLine returns the next line without its line ending; used counts every byte read.
func (p *parser) readLine(br *bufio.Reader, used *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		p.long = append(p.long[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(p.long) > p.limit-*used {
				return nil, errTooLarge
			}
			line, err = br.ReadSlice('\n')
			p.long = append(p.long, line...)
		}
		line = p.long
	}
	*used += len(line)
	if err != nil {
		return nil, err
	}
	if *used > p.limit {
		return nil, errTooLarge
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// parse reads one request head into h. A *headError is a malformed request; any other error
// is the connection's (EOF, timeout).
func (p *parser) parse(br *bufio.Reader, h *head) error {
	*h = head{xff: h.xff[:0], xffOff: h.xffOff[:0]}
	p.xbuf = p.xbuf[:0]
	used := 0
	line, err := p.readLine(br, &used)
	// RFC 9112 section 2.2: a server should ignore at least one empty line before a request.
	if err == nil && len(line) == 0 {
		line, err = p.readLine(br, &used)
	}
	if err != nil {
		return err
	}
	if err := h.requestLine(line); err != nil {
		return err
	}
	hosts, length := 0, int64(-1)
	for {
		line, err := p.readLine(br, &used)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := field(line)
		if !ok {
			return errMalformed
		}
		switch {
		case equalFold(name, "host"):
			if hosts++; hosts > 1 {
				return errMalformed
			}
		case equalFold(name, "connection"):
			h.connection(value)
		case equalFold(name, "content-length"):
			n, ok := parseLength(value)
			if !ok || length >= 0 && n != length {
				return errMalformed
			}
			length = n
			h.body = h.body || n > 0
		case equalFold(name, "transfer-encoding"):
			h.body = true
		case equalFold(name, "expect"):
			h.expect = true
		case equalFold(name, "x-forwarded-for"):
			off := len(p.xbuf)
			p.xbuf = append(p.xbuf, value...)
			h.xffOff = append(h.xffOff, [2]int{off, len(p.xbuf)})
		case equalFold(name, "x-forwarded-proto"):
			if h.xfp == "" {
				h.xfp = string(value) // rare: only behind proxies that send it
			}
		}
	}
	if hosts == 0 && h.minor == 1 {
		return errNoHost
	}
	// Strings over xbuf are taken once it no longer grows.
	for _, o := range h.xffOff {
		h.xff = append(h.xff, string(p.xbuf[o[0]:o[1]]))
	}
	return nil
}

// requestLine parses "METHOD SP TARGET SP HTTP/1.x".
func (h *head) requestLine(line []byte) error {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errMalformed
	}
	method, rest := line[:sp1], line[sp1+1:]
	sp2 := bytes.LastIndexByte(rest, ' ')
	if sp2 <= 0 {
		return errMalformed
	}
	target, version := rest[:sp2], rest[sp2+1:]
	if len(version) != 8 || string(version[:7]) != "HTTP/1." {
		if len(version) >= 5 && string(version[:5]) == "HTTP/" {
			return errVersion
		}
		return errMalformed
	}
	switch version[7] {
	case '0':
		h.minor = 0
	case '1':
		h.minor, h.keepAlive = 1, true
	default:
		return errVersion
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return errMalformed
		}
	}
	switch string(method) { // no allocation: the compiler compares in place
	case http.MethodGet:
		h.method = http.MethodGet
	case http.MethodHead:
		h.method = http.MethodHead
	case http.MethodOptions:
		h.method = http.MethodOptions
	default:
		for _, c := range method {
			if !isToken(c) {
				return errMalformed
			}
		}
		h.method = string(method)
	}
	h.target = string(target)
	return nil
}

// connection applies a Connection header's tokens.
func (h *head) connection(v []byte) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = trimOWS(tok)
		switch {
		case equalFold(tok, "close"):
			h.keepAlive = false
			return // close wins whatever follows
		case equalFold(tok, "keep-alive"):
			h.keepAlive = true
		}
	}
}

// field splits "Name: value"; the name must be a token right before the colon, the value
// must hold no control byte but HTAB.
func field(line []byte) (name, value []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return nil, nil, false
	}
	name, value = line[:i], trimOWS(line[i+1:])
	for _, c := range name {
		if !isToken(c) {
			return nil, nil, false
		}
	}
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, nil, false
		}
	}
	return name, value, true
}

func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares b with the lower-case ASCII s, ignoring b's case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// isToken reports whether c may appear in a method or a field name (RFC 9110 tchar).
func isToken(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// splitTarget turns a request target into the escaped path and raw query the handler takes.
// The absolute form (http://host/path) keeps its path, as net/http does; "*" and an
// authority are no path.
func splitTarget(t string) (path, query string) {
	if t != "" && t[0] != '/' {
		if i := indexScheme(t); i > 0 {
			rest := t[i+3:]
			j := 0
			for j < len(rest) && rest[j] != '/' && rest[j] != '?' {
				j++
			}
			t = rest[j:]
		}
	}
	for i := 0; i < len(t); i++ {
		if t[i] == '?' {
			return t[:i], t[i+1:]
		}
	}
	return t, ""
}

// indexScheme returns the index of "://" after a URI scheme at the start of t, or -1.
func indexScheme(t string) int {
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case c == ':' && i > 0:
			if len(t) >= i+3 && t[i+1] == '/' && t[i+2] == '/' {
				return i
			}
			return -1
		default:
			return -1
		}
	}
	return -1
}
