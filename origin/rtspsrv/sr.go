package rtspsrv

import (
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/ntp"
	"github.com/pion/rtcp"
)

// senderReporter builds the RTCP sender reports of one track of a feed: the source clock
// (media.Unit.NTP) of an RTP timestamp. A relay origin pulling the stream reads the NTP of
// every packet from them (gortsplib's Client.PacketNTP), so its copy carries the same wall
// clock as this one; gortsplib's own reports come every 10 s and its period is not
// settable, so the feed sends these instead, every Server.SenderReportPeriod.
type senderReporter struct {
	rate int
	ssrc uint32 // the ServerStream's SSRC of the track's format

	mu     sync.Mutex
	ok     bool
	rtp    uint32    // RTP timestamp of the last unit with a clock
	ntp    time.Time // its source NTP
	system time.Time // when it was written
}

// note records the clock of the unit just written.
func (r *senderReporter) note(ts uint32, ntp, now time.Time) {
	r.mu.Lock()
	r.ok, r.rtp, r.ntp, r.system = true, ts, ntp, now
	r.mu.Unlock()
}

// report is the sender report for now, nil before the first unit with a clock. Like
// RFC 3550 asks, its NTP and RTP times are those of the moment it is sent: both move on from
// the last unit by the wall time elapsed since it was written, so the mapping is exactly
// that of the last unit.
func (r *senderReporter) report(now time.Time) *rtcp.SenderReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.ok || r.rate <= 0 {
		return nil
	}
	el := max(now.Sub(r.system), 0)
	ticks := int64(el/time.Second)*int64(r.rate) + int64(el%time.Second)*int64(r.rate)/int64(time.Second)
	return &rtcp.SenderReport{
		SSRC:    r.ssrc,
		NTPTime: ntp.Encode(r.ntp.Add(el)),
		RTPTime: r.rtp + uint32(ticks),
	}
}

// sendReports sends every track's report each SenderReportPeriod until done is closed.
func (o *output) sendReports(done <-chan struct{}) {
	t := time.NewTicker(o.h.s.SenderReportPeriod)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		now := time.Now()
		for i, r := range o.reports {
			if sr := r.report(now); sr != nil {
				_ = o.ss.WritePacketRTCP(o.medias[i], sr)
			}
		}
	}
}
