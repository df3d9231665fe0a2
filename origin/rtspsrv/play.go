package rtspsrv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/peergate/peergate/origin/media"
)

// output is the one RTP feed of a live stream: a hub reader packetized once into a
// gortsplib ServerStream that fans out to every RTSP reader session.
type output struct {
	h        *handler
	st       *media.Stream
	rd       *media.Reader
	ss       *gortsplib.ServerStream
	medias   []*description.Media // per hub track
	encoders []func(u media.Unit) ([]*rtp.Packet, error)
	tsBase   []uint32
	rates    []int
	reports  []*senderReporter // per hub track
	refs     int               // reader sessions; guarded by h.mu
	lastUsed time.Time         // guarded by h.mu
}

// output returns the feed of name, creating it (and maybe waiting for an on-demand start).
func (h *handler) output(name string) (*output, error) {
	h.mu.Lock()
	if o := h.outs[name]; o != nil && o.live() {
		o.lastUsed = time.Now() // the reaper must not close a feed being handed out
		h.mu.Unlock()
		return o, nil
	}
	h.mu.Unlock()

	st, err := h.s.Table.Find(h.s.ctx, name)
	if err != nil {
		return nil, err
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if o := h.outs[name]; o != nil && o.live() {
		o.lastUsed = time.Now()
		return o, nil
	}
	if h.s.ctx.Err() != nil {
		return nil, context.Canceled
	}
	o, err := newOutput(h, st)
	if err != nil {
		return nil, err
	}
	h.outs[name] = o
	h.s.wg.Add(1)
	go o.run()
	return o, nil
}

func newOutput(h *handler, st *media.Stream) (*output, error) {
	o := &output{h: h, st: st, lastUsed: time.Now()}
	desc := &description.Session{}
	for _, tr := range st.Tracks() {
		f, enc, err := encoderFor(tr)
		if err != nil {
			return nil, err
		}
		typ := description.MediaTypeAudio
		if tr.IsVideo() {
			typ = description.MediaTypeVideo
		}
		m := &description.Media{Type: typ, Formats: []format.Format{f}}
		desc.Medias = append(desc.Medias, m)
		o.medias = append(o.medias, m)
		o.encoders = append(o.encoders, enc)
		o.tsBase = append(o.tsBase, rand.Uint32())
		o.rates = append(o.rates, tr.ClockRate())
		o.reports = append(o.reports, &senderReporter{rate: tr.ClockRate()})
	}
	o.ss = &gortsplib.ServerStream{Server: h.s.srv, Desc: desc}
	if err := o.ss.Initialize(); err != nil {
		return nil, err
	}
	rd, err := st.AddReader(media.ReaderOptions{QueueLen: 4096})
	if err != nil {
		o.ss.Close()
		return nil, err
	}
	o.rd = rd
	stats := o.ss.Stats()
	for i, m := range o.medias {
		for _, fs := range stats.Medias[m].Formats {
			o.reports[i].ssrc = fs.LocalSSRC
		}
	}
	return o, nil
}

// run packetizes hub units until the stream ends or the feed is closed.
func (o *output) run() {
	defer o.h.s.wg.Done()
	defer o.ss.Close()
	srDone := make(chan struct{})
	defer close(srDone)
	o.h.s.wg.Add(1)
	go func() {
		defer o.h.s.wg.Done()
		o.sendReports(srDone)
	}()
	for u := range o.rd.C() {
		if u.Track >= len(o.encoders) {
			continue
		}
		pkts, err := o.encoders[u.Track](u)
		if err != nil {
			continue
		}
		ts := o.tsBase[u.Track] + uint32(media.ToClock(u.PTS, o.rates[u.Track]))
		if !u.NTP.IsZero() { // zero while the stream awaits its source's clock: no report
			o.reports[u.Track].note(ts, u.NTP, time.Now())
		}
		for _, p := range pkts {
			p.Timestamp += ts
			// Per-session queues drop, never block. gortsplib gets the local time of writing
			// (it derives PLAY's RTP-Info from it); the source clock goes in our sender reports.
			_ = o.ss.WritePacketRTP(o.medias[u.Track], p)
		}
	}
	err := o.rd.Err()
	if !errors.Is(err, media.ErrReaderClosed) {
		o.h.log.Info("rtsp feed ended", "name", o.st.Name(), "err", errString(err))
	}
	o.h.mu.Lock()
	if o.h.outs[o.st.Name()] == o {
		delete(o.h.outs, o.st.Name())
	}
	o.h.mu.Unlock()
}

// live reports whether the feed's stream still has its publisher (a new publisher of the
// same NAME needs a new feed).
func (o *output) live() bool {
	select {
	case <-o.st.Done():
		return false
	default:
		return true
	}
}

// close stops the feed; sessions reading it are closed by the ServerStream.
func (o *output) close() { o.rd.Close() }

func (h *handler) closeOutputs() {
	h.mu.Lock()
	outs := h.outs
	h.outs = map[string]*output{}
	h.mu.Unlock()
	for _, o := range outs {
		o.close()
	}
}

// encoderFor builds the outgoing RTP format of a track and its packetizer; packets come
// with timestamps relative to the unit's PTS.
func encoderFor(tr *media.Track) (format.Format, func(media.Unit) ([]*rtp.Packet, error), error) {
	switch f := tr.Format.(type) {
	case *format.H264:
		sps, pps := f.SafeParams()
		out := &format.H264{PayloadTyp: 96, SPS: sps, PPS: pps, PacketizationMode: 1}
		enc, err := out.CreateEncoder()
		if err != nil {
			return nil, nil, err
		}
		return out, func(u media.Unit) ([]*rtp.Packet, error) { return enc.Encode(u.AU) }, nil
	case *format.H265:
		vps, sps, pps := f.SafeParams()
		out := &format.H265{PayloadTyp: 96, VPS: vps, SPS: sps, PPS: pps}
		enc, err := out.CreateEncoder()
		if err != nil {
			return nil, nil, err
		}
		return out, func(u media.Unit) ([]*rtp.Packet, error) { return enc.Encode(u.AU) }, nil
	case *format.MPEG4Audio:
		out := &format.MPEG4Audio{PayloadTyp: 97, Config: f.Config, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}
		enc, err := out.CreateEncoder()
		if err != nil {
			return nil, nil, err
		}
		return out, func(u media.Unit) ([]*rtp.Packet, error) { return enc.Encode([][]byte{u.Frame}) }, nil
	case *format.Opus:
		out := &format.Opus{PayloadTyp: 111, ChannelCount: f.ChannelCount}
		enc, err := out.CreateEncoder()
		if err != nil {
			return nil, nil, err
		}
		return out, func(u media.Unit) ([]*rtp.Packet, error) {
			p, err := enc.Encode(u.Frame)
			if err != nil {
				return nil, err
			}
			return []*rtp.Packet{p}, nil
		}, nil
	}
	return nil, nil, fmt.Errorf("rtspsrv: codec %s is not supported", tr.Format.Codec())
}
