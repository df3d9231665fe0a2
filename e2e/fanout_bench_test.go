package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/redistest"
)

// BenchmarkFanOutViewers measures what cluster pull-through buys at one capacity: four
// origins with capacity.max_clients 10 each, one of them publishing live/big, and 50 RTSP
// viewers arriving through the gateway one every 250 ms. With fan-out off
// (balance.spill_at 0) only the owner serves the stream; with it on (0.8) the overflow goes
// to relays. A third round sends the 50 one every 20 ms, faster than heartbeats (1 s here)
// report load: the gateway's own count of what it sent keeps every origin within its
// capacity. Reported: viewers that received media (served), viewers per origin of the
// cluster (served/4), the most clients any origin reported (peak-clients; the owner's
// include its relays' pulls) and the ratio on/off measured in the same run. It runs each
// cluster once whatever b.N is.
func BenchmarkFanOutViewers(b *testing.B) {
	mediatest.Tool(b, "ffmpeg")
	const (
		origins    = 4
		maxClients = 10
		viewers    = 50
	)
	served := map[string]int{}
	for _, mode := range []struct {
		name    string
		spillAt string
		gap     time.Duration
	}{{"fanout=off", "0", 250 * time.Millisecond}, {"fanout=on", "0.8", 250 * time.Millisecond}, {"fanout=on/burst", "0.8", 20 * time.Millisecond}} {
		b.Run(mode.name, func(b *testing.B) {
			for b.Loop() {
				n, peak := fanOutRound(b, mode.spillAt, origins, maxClients, viewers, mode.gap)
				served[mode.name] = n
				b.ReportMetric(float64(n), "served")
				b.ReportMetric(float64(n)/origins, "viewers/origin")
				b.ReportMetric(float64(peak), "peak-clients")
			}
		})
	}
	if off := served["fanout=off"]; off > 0 {
		b.Logf("viewers served: fan-out off %d, on %d of %d (capacity %d × %d origins): %.2f×",
			off, served["fanout=on"], viewers, maxClients, origins, float64(served["fanout=on"])/float64(off))
	}
}

// fanOutRound runs one cluster, viewers arriving gap apart, and counts the viewers that
// received RTP packets and the most clients any origin reported meanwhile.
func fanOutRound(b *testing.B, spillAt string, origins, maxClients, viewers int, gap time.Duration) (int, int64) {
	b.StopTimer()
	rs := redistest.Standalone(b)
	capacity := fmt.Sprintf("PEERGATE_CAPACITY_MAX_CLIENTS=%d", maxClients)
	startMediaOrigin(b, "fb-own", rs.URL(), "streams:\n  - name: live/big\n    source: "+mediatest.Demo(b)+"\n", capacity)
	for i := 1; i < origins; i++ {
		startMediaOrigin(b, fmt.Sprintf("fb-r%d", i), rs.URL(), "", capacity, "PEERGATE_ONDEMAND_IDLE_TIMEOUT=3s")
	}
	gw := startGatewayOn(b, "gw", rs.URL(), "PEERGATE_BALANCE_SPILL_AT="+spillAt)
	mediatest.EventuallyT(b, 20*time.Second, func() bool {
		m, _ := streamOrigins(gw, "live/big")
		return m["fb-own"] == "running"
	}, "live/big never ran")
	b.StartTimer()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	got := make([]atomic.Int64, viewers)
	var refused atomic.Int64
	var peak atomic.Int64
	var peakAt atomic.Value // origin id
	peakAt.Store("")
	var peakOther atomic.Int64 // the most clients any origin but the owner reported
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for ctx.Err() == nil {
			if m, err := originClients(gw); err == nil {
				for id, n := range m {
					if id != "fb-own" && n > peakOther.Load() {
						peakOther.Store(n)
					}
					if n > peak.Load() {
						peak.Store(n)
						peakAt.Store(id)
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	for i := range viewers {
		wg.Go(func() {
			err := rtspViewer(ctx, "rtsp://"+gw.addr("rtsp")+"/live/big", &got[i])
			if err != nil && ctx.Err() == nil {
				if refused.Add(1) == 1 {
					b.Logf("first refused viewer: %v", err)
				}
			}
		})
		time.Sleep(gap)
	}
	// Everybody has had time to start; count the ones media reaches now.
	before := make([]int64, viewers)
	time.Sleep(3 * time.Second)
	for i := range got {
		before[i] = got[i].Load()
	}
	time.Sleep(3 * time.Second)
	n := 0
	for i := range got {
		if got[i].Load() > before[i] {
			n++
		}
	}
	cancel()
	wg.Wait()
	<-sampled
	b.Logf("spill_at %s, one viewer every %v: %d of %d viewers received media, %d refused, peak %d clients (on %s), %d on any other origin",
		spillAt, gap, n, viewers, refused.Load(), peak.Load(), peakAt.Load(), peakOther.Load())
	return n, peak.Load()
}

// rtspViewer plays url (following the gateway's redirect) and counts RTP packets into n
// until ctx ends or the server refuses.
func rtspViewer(ctx context.Context, url string, n *atomic.Int64) error {
	u, err := base.ParseURL(url)
	if err != nil {
		return err
	}
	tcp := gortsplib.ProtocolTCP
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp, UserAgent: "fanout-bench"}
	if err := c.Start(); err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()
	desc, _, err := c.Describe(u)
	if err != nil {
		return err
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		return err
	}
	c.OnPacketRTPAny(func(*description.Media, format.Format, *rtp.Packet) { n.Add(1) })
	if _, err := c.Play(nil); err != nil {
		return err
	}
	return c.Wait()
}
