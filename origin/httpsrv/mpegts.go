package httpsrv

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/substructs"

	"github.com/peergate/peergate/origin/media"
)

// tsBufBytes batches small writes into TS packets between flushes.
const tsBufBytes = 64 << 10

// serveMPEGTS streams a never-ending MPEG-TS body to one viewer from its own hub reader,
// starting at a key frame.
func (s *Server) serveMPEGTS(w http.ResponseWriter, r *http.Request, name string) {
	st := s.findStream(w, r, name)
	if st == nil {
		return
	}
	tracks, byHub := tsTracks(st.Tracks())
	if len(tracks) == 0 {
		http.Error(w, "stream cannot be served over MPEG-TS", http.StatusServiceUnavailable)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "video/mp2t")
	h.Set("Cache-Control", "no-store")
	// A live body has no bytes to seek to: any Range header is ignored (200, whole stream).
	h.Set("Accept-Ranges", "none")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	v, err := st.TryJoin(media.ProtoMPEGTS)
	if err != nil {
		h.Set("Retry-After", "5")
		http.Error(w, "too many viewers", http.StatusServiceUnavailable)
		return
	}
	defer v.Leave()
	rd, err := st.AddReader(media.ReaderOptions{})
	if err != nil {
		h.Set("Retry-After", "1")
		http.Error(w, "stream unavailable", http.StatusServiceUnavailable)
		return
	}
	defer rd.Close()

	rc := http.NewResponseController(w)
	// The body never ends: no read deadline (the client's close still ends the request
	// context), and a write deadline per unit instead of per response.
	_ = rc.SetReadDeadline(time.Time{})
	start := time.Now()
	cw := &countingWriter{ResponseWriter: w}
	bw := bufio.NewWriterSize(cw, tsBufBytes)
	tw := &mpegts.Writer{W: bw, Tracks: tracks}
	if err := tw.Initialize(); err != nil {
		http.Error(w, "mpegts: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)

	hasVideo := false
	for i, t := range st.Tracks() {
		if byHub[i] != nil && t.IsVideo() {
			hasVideo = true
		}
	}
	started := !hasVideo
	var sent int64
	err = func() error {
		for {
			u, err := rd.Read(r.Context())
			if err != nil {
				return err
			}
			tr := byHub[u.Track]
			if tr == nil {
				continue
			}
			if !started {
				// Players need a key frame (with SPS/PPS, which the hub prepends) first.
				if !u.KeyFrame {
					continue
				}
				started = true
			}
			_ = rc.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
			if err := writeTS(tw, tr, u); err != nil {
				return err
			}
			if len(rd.C()) == 0 {
				if err := bw.Flush(); err != nil {
					return err
				}
				if err := rc.Flush(); err != nil {
					return err
				}
				v.Sent(int(cw.n - sent))
				sent = cw.n
			}
		}
	}()
	v.Sent(int(cw.n - sent))
	s.Logger.Info("mpegts viewer ended", "stream", name, "remote", r.RemoteAddr,
		"bytes", cw.n, "duration", time.Since(start).Round(time.Millisecond), "reason", tsReason(err))
}

func tsReason(err error) string {
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return "write_timeout"
	}
	if errors.Is(err, io.EOF) {
		return "stream_ended"
	}
	if r := reason(err); r != err.Error() {
		return r
	}
	return "write_error"
}

func writeTS(tw *mpegts.Writer, tr *mpegts.Track, u media.Unit) error {
	pts := media.ToClock(u.PTS+tsOffset, 90000)
	switch tr.Codec.(type) {
	case *mpegts.CodecH264:
		return tw.WriteH264(tr, pts, media.ToClock(u.DTS+tsOffset, 90000), u.AU)
	case *mpegts.CodecH265:
		return tw.WriteH265(tr, pts, media.ToClock(u.DTS+tsOffset, 90000), u.AU)
	case *mpegts.CodecMPEG4Audio:
		return tw.WriteMPEG4Audio(tr, pts, [][]byte{u.Frame})
	case *mpegts.CodecOpus:
		return tw.WriteOpus(tr, pts, [][]byte{u.Frame})
	}
	return nil
}

// tsTracks maps every hub track MPEG-TS can carry.
func tsTracks(in []*media.Track) ([]*mpegts.Track, map[int]*mpegts.Track) {
	var out []*mpegts.Track
	byHub := map[int]*mpegts.Track{}
	for i, t := range in {
		var c mpegts.Codec
		switch f := t.Format.(type) {
		case *format.H264:
			c = &mpegts.CodecH264{}
		case *format.H265:
			c = &mpegts.CodecH265{}
		case *format.MPEG4Audio:
			c = &mpegts.CodecMPEG4Audio{Config: *f.Config}
		case *format.Opus:
			c = &mpegts.CodecOpus{Desc: &substructs.OpusAudioDescriptor{ChannelConfigCode: uint8(f.ChannelCount)}}
		}
		if c == nil {
			continue
		}
		tr := &mpegts.Track{Codec: c}
		out = append(out, tr)
		byHub[i] = tr
	}
	return out, byHub
}
