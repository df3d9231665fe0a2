package rtspsrv

import (
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/ntp"
	"github.com/pion/rtp"

	"github.com/peergate/peergate/origin/media"
)

// TestSenderReportMapping: a report sent some time after the last unit keeps that unit's
// NTP-RTP mapping (both times move on by the elapsed wall time); no report before a unit.
func TestSenderReportMapping(t *testing.T) {
	r := &senderReporter{rate: 90000, ssrc: 7}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if r.report(t0) != nil {
		t.Fatal("report before any unit")
	}
	src := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	r.note(1000, src, t0)
	sr := r.report(t0.Add(1500 * time.Millisecond))
	if sr.SSRC != 7 || sr.RTPTime != 1000+135000 {
		t.Fatalf("report %+v", sr)
	}
	if got := ntp.Decode(sr.NTPTime).Sub(src); got < 1500*time.Millisecond-time.Microsecond || got > 1500*time.Millisecond+time.Microsecond {
		t.Fatalf("report NTP %v after the unit's, want 1.5 s", got)
	}
	// A receiver maps the unit's timestamp back to the unit's NTP.
	back := ntp.Decode(sr.NTPTime).Add(-time.Duration(int32(sr.RTPTime-1000)) * time.Second / 90000)
	if d := back.Sub(src); d < -time.Microsecond || d > time.Microsecond {
		t.Fatalf("mapped back %v off", d)
	}
}

// TestPlayerGetsSourceClock: a player (gortsplib's client, as a relay origin pulls) learns the
// stream's source clock from the feed's sender reports soon after PLAY: the NTP of every
// packet is the NTP the hub stamped on its unit, not the time it was sent.
func TestPlayerGetsSourceClock(t *testing.T) {
	tbl := media.NewTable(media.Config{})
	defer tbl.Close()
	_, root := startServer(t, tbl)
	st, err := tbl.Publish("live/clock", []*media.Track{{Format: &format.H264{PayloadTyp: 96, SPS: sps720, PPS: []byte{0x68, 0xee, 0x3c, 0x80}, PacketizationMode: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	// The source's clock is years away from now: an invented clock cannot pass for it.
	src := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	const frame = 40 * time.Millisecond
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(frame)
		defer tk.Stop()
		for i := 0; ; i++ {
			nal := []byte{0x41, 0x9a, byte(i)}
			if i%25 == 0 {
				nal = []byte{0x65, 0x88, byte(i)}
			}
			pts := time.Duration(i) * frame
			st.WriteUnit(media.Unit{Track: 0, PTS: pts, DTS: pts, NTP: src.Add(pts), AU: [][]byte{nal}})
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	u, err := base.ParseURL(root + "/live/clock")
	if err != nil {
		t.Fatal(err)
	}
	tcp := gortsplib.ProtocolTCP
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	desc, _, err := c.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		t.Fatal(err)
	}
	type got struct {
		ntp time.Time
		at  time.Time
	}
	ch := make(chan got, 1)
	medi := desc.Medias[0]
	var once sync.Once
	c.OnPacketRTP(medi, medi.Formats[0], func(p *rtp.Packet) {
		if n, ok := c.PacketNTP(medi, p); ok {
			once.Do(func() { ch <- got{n, time.Now()} })
		}
	})
	played := time.Now()
	if _, err := c.Play(nil); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-ch:
		off := g.ntp.Sub(src)
		if off < 0 || off > time.Minute {
			t.Fatalf("packet NTP %v is not on the source clock (%v)", g.ntp, src)
		}
		// Units are 40 ms apart on the source clock: the packet's NTP is one of them.
		if r := off % frame; r > time.Millisecond && r < frame-time.Millisecond {
			t.Fatalf("packet NTP %v is %v off the unit grid", g.ntp, r)
		}
		// gortsplib's own reports come after 10 s; ours within SenderReportPeriod (1 s).
		if d := g.at.Sub(played); d > 5*time.Second {
			t.Fatalf("first sender report %v after PLAY", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no sender report reached the player")
	}
}
