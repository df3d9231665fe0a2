package ondemand

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	hlscodecs "github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/peergate/peergate/origin/ingest"
	"github.com/peergate/peergate/origin/media"
)

// sourceClockWait bounds how long an RTSP pull waits for its source's first sender report
// before the copy anchors a clock of its own (a source that sends none).
const sourceClockWait = 5 * time.Second

// rtspPuller plays an RTSP source over TCP (reliable between servers, no UDP port games).
type rtspPuller struct{}

func (rtspPuller) run(ctx context.Context, u *url.URL, timeout time.Duration, pub *publisher) error {
	bu, err := base.ParseURL(u.String())
	if err != nil {
		return err
	}
	c := &gortsplib.Client{
		Scheme:       bu.Scheme,
		Host:         bu.Host,
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		Protocol:     ptr(gortsplib.ProtocolTCP),
		UserAgent:    "peergate-origin",
	}
	if err := c.Start(); err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()

	desc, _, err := c.Describe(bu)
	if err != nil {
		return fmt.Errorf("describe: %w", err)
	}
	type pick struct {
		medi  *description.Media
		forma format.Format
	}
	var picks []pick
	var tracks []*media.Track
	for _, medi := range desc.Medias {
		for _, f := range medi.Formats {
			if media.Supported(f) {
				picks = append(picks, pick{medi, f})
				tracks = append(tracks, &media.Track{Format: f})
				break
			}
		}
	}
	if len(picks) == 0 {
		return errors.New("no supported track in the source")
	}
	for _, p := range picks {
		if _, err := c.Setup(desc.BaseURL, p.medi, 0, 0); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
	}
	st, err := pub.clocked(tracks)
	if err != nil {
		return err
	}
	// The source's wall clock comes with its RTCP sender reports (a peergate origin sends one
	// a second, from the owner's clock): stamp nothing until the first, so every output of this
	// copy shows the source's clock (HLS PROGRAM-DATE-TIME), never one of its own.
	st.AwaitSourceClock(sourceClockWait)
	for i, p := range picks {
		cb, err := ingest.Depacketizer(p.forma, i, st.WriteUnit)
		if err != nil {
			return err
		}
		medi := p.medi
		c.OnPacketRTP(medi, p.forma, func(pkt *rtp.Packet) {
			pts, ok := c.PacketPTS(medi, pkt)
			if !ok {
				return
			}
			ntp, _ := c.PacketNTP(medi, pkt)
			cb(pkt, pts, ntp)
		})
	}
	if _, err := c.Play(nil); err != nil {
		return fmt.Errorf("play: %w", err)
	}
	err = c.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func ptr[T any](v T) *T { return &v }

// rtmpPuller plays an RTMP source.
type rtmpPuller struct{}

func (rtmpPuller) run(ctx context.Context, u *url.URL, timeout time.Duration, pub *publisher) error {
	dialer := &net.Dialer{Timeout: timeout}
	var conn net.Conn
	var connMu sync.Mutex
	c := &gortmplib.Client{
		URL: u,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := dialer.DialContext(ctx, network, addr)
			if err == nil {
				// The handshake and the track analysis (up to a few seconds of media) are bounded.
				_ = nc.SetDeadline(time.Now().Add(timeout + 5*time.Second))
				connMu.Lock()
				conn = nc
				connMu.Unlock()
			}
			return nc, err
		},
	}
	stop := context.AfterFunc(ctx, func() {
		connMu.Lock()
		defer connMu.Unlock()
		if conn != nil {
			conn.Close()
		}
	})
	defer stop()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	err := c.Initialize(cctx)
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	r := &gortmplib.Reader{Conn: c}
	if err := r.Initialize(); err != nil {
		return fmt.Errorf("tracks: %w", err)
	}
	tracks, attach := ingest.RTMPTracks(r, nil)
	if len(tracks) == 0 {
		return errors.New("no supported track in the source")
	}
	st, err := pub.publish(tracks)
	if err != nil {
		return err
	}
	attach(st)
	nc := c.NetConn()
	_ = nc.SetWriteDeadline(time.Time{})
	for {
		_ = nc.SetReadDeadline(time.Now().Add(timeout))
		if err := r.Read(); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
}

// hlsPuller plays an HLS source with gohlslib's client.
type hlsPuller struct{}

func (hlsPuller) run(ctx context.Context, u *url.URL, timeout time.Duration, pub *publisher) error {
	var pubErr error
	var c *gohlslib.Client
	c = &gohlslib.Client{
		URI: u.String(),
		HTTPClient: &http.Client{
			Timeout: timeout,
			// Follow redirects, but not forever.
			CheckRedirect: func(_ *http.Request, via []*http.Request) error {
				if len(via) >= 5 {
					return errors.New("too many redirects")
				}
				return nil
			},
		},
		// gohlslib logs every download by default; decode errors are not worth a log line each.
		OnDownloadPrimaryPlaylist: func(string) {},
		OnDownloadStreamPlaylist:  func(string) {},
		OnDownloadSegment:         func(string) {},
		OnDownloadPart:            func(string) {},
		OnDecodeError:             func(error) {},
		OnTracks: func(in []*gohlslib.Track) error {
			var tracks []*media.Track
			var used []*gohlslib.Track
			for _, t := range in {
				if mt := trackFromHLS(t.Codec); mt != nil {
					tracks = append(tracks, mt)
					used = append(used, t)
				}
			}
			if len(tracks) == 0 {
				pubErr = errors.New("no supported track in the source")
				return pubErr
			}
			st, err := pub.publish(tracks)
			if err != nil {
				pubErr = err
				return err
			}
			for i, t := range used {
				rate := t.ClockRate
				switch t.Codec.(type) {
				case *hlscodecs.H264, *hlscodecs.H265:
					c.OnDataH26x(t, func(pts, dts int64, au [][]byte) {
						st.WriteUnit(media.Unit{Track: i, PTS: media.FromClock(pts, rate), DTS: media.FromClock(dts, rate), AU: au})
					})
				case *hlscodecs.MPEG4Audio:
					c.OnDataMPEG4Audio(t, func(pts int64, aus [][]byte) {
						for j, au := range aus {
							d := media.FromClock(pts+int64(j)*mpeg4audio.SamplesPerAccessUnit, rate)
							st.WriteUnit(media.Unit{Track: i, PTS: d, DTS: d, Frame: au})
						}
					})
				case *hlscodecs.Opus:
					c.OnDataOpus(t, func(pts int64, pkts [][]byte) {
						for _, pkt := range pkts {
							d := media.FromClock(pts, rate)
							st.WriteUnit(media.Unit{Track: i, PTS: d, DTS: d, Frame: pkt})
							pts += 960 // 20 ms at 48 kHz, Opus's common packet length
						}
					})
				}
			}
			return nil
		},
	}
	if err := c.Start(); err != nil {
		return err
	}
	defer c.Close()
	select {
	case err := <-c.Wait():
		if pubErr != nil {
			return pubErr
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// trackFromHLS converts a gohlslib codec the hub carries; nil otherwise.
func trackFromHLS(c hlscodecs.Codec) *media.Track {
	switch c := c.(type) {
	case *hlscodecs.H264:
		return &media.Track{Format: &format.H264{PayloadTyp: 96, SPS: c.SPS, PPS: c.PPS, PacketizationMode: 1}}
	case *hlscodecs.H265:
		return &media.Track{Format: &format.H265{PayloadTyp: 96, VPS: c.VPS, SPS: c.SPS, PPS: c.PPS}}
	case *hlscodecs.MPEG4Audio:
		if c.Config.SampleRate <= 0 {
			return nil // not carried (media.Supported); dropping it here keeps track indices aligned
		}
		cfg := c.Config
		return &media.Track{Format: &format.MPEG4Audio{
			PayloadTyp: 96, Config: &cfg, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3,
		}}
	case *hlscodecs.Opus:
		return &media.Track{Format: &format.Opus{PayloadTyp: 96, ChannelCount: c.ChannelCount}}
	}
	return nil
}
