package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/redistest"
)

// originClients asks the gateway's admin API for every origin's reported client count.
func originClients(gw *proc) (map[string]int64, error) {
	res, err := http.Get("http://" + gw.addr("admin") + "/api/v1/origins")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var body struct {
		Origins []struct {
			Origin struct {
				ID   string `json:"id"`
				Load struct {
					Clients int64 `json:"clients"`
				} `json:"load"`
			} `json:"origin"`
		} `json:"origins"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, o := range body.Origins {
		out[o.Origin.ID] = o.Origin.Load.Clients
	}
	return out, nil
}

// relaysOf lists the origins the gateway shows relaying name.
func relaysOf(gw *proc, name string) (map[string]bool, error) {
	es, err := streamEntries(gw, name)
	out := map[string]bool{}
	for _, e := range es {
		if e.Relay {
			out[e.ID] = true
		}
	}
	return out, err
}

// logRecords returns a proc's JSON log records whose msg is msg.
func logRecords(p *proc, msg string) []map[string]any {
	lines, _ := p.logLines(0)
	var out []map[string]any
	for _, l := range lines {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// viewer is one ffmpeg reading a URL through the gateway (copying, not decoding, to keep 60
// of them affordable on a small machine) until stop; frames is the last progress count.
type viewer struct {
	url    string
	ua     string // distinct per viewer: an origin folds HLS requests of one address and User-Agent into one session
	frames int
	err    error
	out    string
}

func (v *viewer) run(ctx context.Context, stop <-chan struct{}) {
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error", "-user_agent", v.ua}
	if strings.HasPrefix(v.url, "rtsp://") {
		args = append(args, "-rtsp_transport", "tcp")
	}
	args = append(args, "-i", v.url, "-map", "0:v:0", "-c", "copy", "-f", "null", "-progress", "pipe:1", "-")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		v.err = err
		return
	}
	if err := cmd.Start(); err != nil {
		v.err = err
		return
	}
	go func() {
		select {
		case <-stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "frame="); ok {
			if f, err := strconv.Atoi(strings.TrimSpace(n)); err == nil {
				v.frames = f
			}
		}
	}
	_ = cmd.Wait()
	v.out = stderr.String()
}

// TestFanOutThroughGateway (issue 9, cluster pull-through): one origin runs live/big with
// capacity.max_clients 20; three more origins carry nothing. 60 viewers (half HLS, half RTSP)
// arrive through the gateway, one every 300 ms. The gateway sends viewers to the owner until
// it passes balance.spill_at (0.8), then to relays: origins that pull live/big from the owner
// once and serve it. Every viewer reads frames; the owner never reports more than 20 clients
// plus its relay pulls; each relay pulled the stream exactly once (counted at the owner:
// RTSP plays by peergate-origin; and at each relay: one pull start); the admin API lists the
// relays; after the viewers leave, the relays stop (ondemand.idle_timeout) and unlist.
func TestFanOutThroughGateway(t *testing.T) {
	t.Parallel()
	mediatest.Tool(t, "ffmpeg")
	rs := redistest.Standalone(t)
	const idle = 3 * time.Second
	own := startMediaOrigin(t, "fan-own", rs.URL(), "streams:\n  - name: live/big\n    source: "+mediatest.Demo(t)+"\n",
		"PEERGATE_CAPACITY_MAX_CLIENTS=20")
	var relays []*mediaOrigin
	for i := range 3 {
		relays = append(relays, startMediaOrigin(t, fmt.Sprintf("fan-r%d", i+1), rs.URL(), "",
			"PEERGATE_CAPACITY_MAX_CLIENTS=30", "PEERGATE_ONDEMAND_IDLE_TIMEOUT="+idle.String()))
	}
	gw := startGateway(t, "gw", rs.URL())
	waitReady(t, gw)
	mediatest.EventuallyT(t, 20*time.Second, func() bool {
		m, _ := streamOrigins(gw, "live/big")
		return m["fan-own"] == "running"
	}, "live/big never ran on fan-own")

	// The owner's client count as the gateway sees it, sampled all along.
	var maxOwn int64
	var peak map[string]int64
	listed := map[string]bool{} // relays of live/big the admin API showed
	sampleStop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampleStop:
				return
			case <-tick.C:
			}
			if r, err := relaysOf(gw, "live/big"); err == nil {
				for id := range r {
					listed[id] = true
				}
			}
			if m, err := originClients(gw); err == nil {
				if m["fan-own"] > maxOwn {
					maxOwn = m["fan-own"]
				}
				var sum, peakSum int64
				for _, n := range m {
					sum += n
				}
				for _, n := range peak {
					peakSum += n
				}
				if sum > peakSum {
					peak = m
				}
			}
		}
	}()

	const n = 60
	viewers := make([]*viewer, n)
	stop := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	began := time.Now()
	for i := range viewers {
		u := "http://" + gw.addr("http") + "/live/big/index.m3u8"
		if i%2 == 1 {
			u = "rtsp://" + gw.addr("rtsp") + "/live/big"
		}
		viewers[i] = &viewer{url: u, ua: fmt.Sprintf("fanout-viewer-%d", i)}
		wg.Go(func() { viewers[i].run(ctx, stop) })
		time.Sleep(300 * time.Millisecond)
	}
	// Everybody plays together for a while before leaving.
	time.Sleep(8 * time.Second)
	close(stop)
	wg.Wait()
	close(sampleStop)
	<-sampled
	t.Logf("60 viewers over %v; owner peak %d clients; peak view %v", time.Since(began).Round(time.Second), maxOwn, peak)

	for i, v := range viewers {
		if v.frames < 25 {
			t.Errorf("viewer %d (%s) read %d frames, want >= 25: %s", i, v.url, v.frames, v.out)
		}
	}

	// Relays: who pulled, from whom, how often.
	var pulled []string
	for _, r := range relays {
		starts := logRecords(r.p, "on-demand pull running")
		for _, rec := range starts {
			if rec["relay_from"] != "fan-own" {
				t.Errorf("%s pulled from %v, want fan-own", r.id, rec["relay_from"])
			}
		}
		switch len(starts) {
		case 0:
		case 1:
			pulled = append(pulled, r.id)
		default:
			t.Errorf("%s started its pull %d times, want once", r.id, len(starts))
		}
	}
	var relayPlays int
	for _, rec := range logRecords(own.p, "rtsp play") {
		if rec["user_agent"] == "peergate-origin" {
			relayPlays++
		}
	}
	t.Logf("relays %v; owner served %d relay pulls", pulled, relayPlays)
	if len(pulled) == 0 {
		t.Fatal("no viewer spilled to a relay")
	}
	for _, id := range pulled {
		if !listed[id] {
			t.Errorf("%s relayed live/big but the admin API never listed it as a relay (listed %v)", id, listed)
		}
	}
	if relayPlays != len(pulled) {
		t.Errorf("the owner served %d relay pulls, want %d (one per relay)", relayPlays, len(pulled))
	}
	if limit := int64(20 + len(pulled)); maxOwn > limit {
		t.Errorf("the owner reported %d clients, want at most %d (max_clients 20 + %d relay pulls)", maxOwn, limit, len(pulled))
	}

	// The admin API knew them as relays; after the viewers left they stop and unlist (an HLS
	// viewer's session outlives its last request by the origin's 30 s session timeout).
	mediatest.EventuallyT(t, 30*time.Second+idle+20*time.Second, func() bool {
		r, err := relaysOf(gw, "live/big")
		return err == nil && len(r) == 0
	}, "relays still listed after their viewers left")
	// The stream leaves the registry as the pull ends, a moment before the pull logs it.
	for _, r := range relays {
		mediatest.EventuallyT(t, 10*time.Second, func() bool {
			return len(logRecords(r.p, "on-demand pull stopped")) == len(logRecords(r.p, "on-demand pull running"))
		}, "%s: a relay pull did not stop after its viewers left", r.id)
	}
}
