package rtspsrv

import (
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/peergate/peergate/origin/ingest"
	"github.com/peergate/peergate/origin/media"
)

// trackMap ties an announced media/format to a hub track.
type trackMap struct {
	media  *description.Media
	format format.Format
	track  int
}

// attachDecoders turns incoming RTP into hub units, one decoder per announced track.
func attachDecoders(ss *gortsplib.ServerSession, st *media.Stream, maps []trackMap, log *slog.Logger) error {
	for _, m := range maps {
		cb, err := ingest.Depacketizer(m.format, m.track, st.WriteUnit)
		if err != nil {
			return err
		}
		medi := m.media
		ss.OnPacketRTP(medi, m.format, func(pkt *rtp.Packet) {
			defer func() {
				// A codec-library bug hit by hostile input must cost one session, not the origin.
				if v := recover(); v != nil {
					log.Error("rtsp depacketizer panic", "name", st.Name(), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
					ss.Close()
				}
			}()
			pts, ok := ss.PacketPTS(medi, pkt)
			if !ok {
				return
			}
			ntp, _ := ss.PacketNTP(medi, pkt)
			cb(pkt, pts, ntp)
		})
	}
	return nil
}
