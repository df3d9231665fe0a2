package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/redistest"
	"github.com/peergate/peergate/shared/registry"
)

// TestReplayedRegistryValues: a live origin's record (GET), stream list (HGETALL) and one of
// its heartbeats (SUBSCRIBE) are captured from Redis; the origin is SIGKILLed and the gateway
// drops it. The captured record and list are then written back with a long PX (and the origin
// listed in the index) and the
// captured heartbeat re-published every 50 ms, through several of the gateway's full
// re-reads, while the gateway is asked for the stream both origins serve: not one request
// goes to the dead origin, and the gateway logs the replays as stale.
func TestReplayedRegistryValues(t *testing.T) {
	t.Parallel()
	rs := redistest.Standalone(t)
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rc.Close()
	const name = "live/replayed"
	sub := rc.Subscribe(ctx, eventsKey())
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	dead := startOrigin(t, "replay-dead", clusterKey, rs.URL(), []string{name})
	live := startOrigin(t, "replay-live", clusterKey, rs.URL(), []string{name})
	gw := startGatewayOn(t, "gw-replay", rs.URL(),
		"PEERGATE_LISTEN_RTSP=",
		"PEERGATE_LISTEN_RTMP=",
		"PEERGATE_REGISTRY_ANTI_ENTROPY=1s", // many full re-reads during the replay
		"PEERGATE_REGISTRY_MAX_CLOCK_SKEW=1s",
		"PEERGATE_HTTP_STICKY_PARAM=token", // one viewer per request: choices spread over every listed origin
		"PEERGATE_BALANCE_HYSTERESIS=0.99", // ... by rendezvous hashing alone, whatever the origins' CPU on a busy machine
	)
	mediatest.EventuallyT(t, 30*time.Second, func() bool {
		got, _ := streamOrigins(gw, name)
		return len(got) == 2
	}, "gateway never listed both origins for %s", name)

	// Capture the dead-to-be origin's record and one of its heartbeats.
	var beat string
	timeout := time.After(30 * time.Second)
	for beat == "" {
		select {
		case m := <-sub.Channel():
			var ev struct{ Kind, Origin string }
			if json.Unmarshal([]byte(m.Payload), &ev) == nil && ev.Kind == "hb" && ev.Origin == dead.id {
				beat = m.Payload
			}
		case <-timeout:
			t.Fatal("no heartbeat of the origin captured in 30s")
		}
	}
	recKey := recKeyOf(dead.id)
	rec, err := rc.Get(ctx, recKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Its stream list too (each entry signed): without it a replayed record names no stream.
	streamsKey := strings.TrimSuffix(recKey, ":rec") + ":streams"
	streams, err := rc.HGetAll(ctx, streamsKey).Result()
	if err != nil || len(streams) == 0 {
		t.Fatalf("stream list %v, %v", streams, err)
	}
	captured := time.Now()

	// The probe can see a dead origin: while both live, requests (one viewer each) reach both.
	c := noRedirects()
	before := map[string]int{}
	for i := range 200 {
		_, loc, _ := probe(ctx, c, gw.addr("http"), "/"+name+"/index.m3u8?token=before"+strconv.Itoa(i))
		before[strings.SplitN(strings.TrimPrefix(loc, "http://"), ".", 2)[0]]++
	}
	t.Logf("200 probes before the kill: %v", before)
	if before[dead.id] == 0 || before[live.id] == 0 {
		t.Fatalf("200 probes before the kill went %v; want both origins chosen", before)
	}

	dead.p.signal(syscall.SIGKILL)
	mediatest.EventuallyT(t, 30*time.Second, func() bool {
		got, _ := streamOrigins(gw, name)
		_, listed := got[dead.id]
		return !listed && got[live.id] == "running"
	}, "gateway never dropped the killed origin")
	t.Logf("gateway dropped the killed origin %s after the capture", time.Since(captured).Round(100*time.Millisecond))
	logFrom := gw.logCount()
	staleBefore := staleTotal(t, gw)

	// Replay while probing.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var replays int
	wg.Go(func() {
		for {
			rc.Set(ctx, recKey, rec, time.Minute)
			rc.HSet(ctx, streamsKey, streams)
			rc.PExpire(ctx, streamsKey, time.Minute)
			rc.ZAdd(ctx, indexKey(), redis.Z{Score: float64(time.Now().Add(time.Minute).UnixMilli()), Member: dead.id})
			rc.Publish(ctx, eventsKey(), beat)
			replays++
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	counts := map[string]int{}
	var firstOther string
	probeUntil := time.Now().Add(5 * time.Second) // five full re-reads at registry.anti_entropy 1s
	total := 0
	for time.Now().Before(probeUntil) || total < 2000 {
		code, loc, err := probe(ctx, c, gw.addr("http"), "/"+name+"/index.m3u8?token="+strconv.Itoa(total))
		total++
		switch {
		case err != nil:
			counts["error"]++
		case code == http.StatusFound && strings.HasPrefix(loc, dead.public+"/"):
			counts["dead"]++
		case code == http.StatusFound && strings.HasPrefix(loc, live.public+"/"):
			counts["live"]++
		default:
			counts["other"]++
			if firstOther == "" {
				firstOther = loc
			}
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d replays (record SET PX 60s, stream list HSET, index ZADD, heartbeat PUBLISH); %d probes: %d to the dead origin, %d to the live one, %d other, %d errors",
		replays, total, counts["dead"], counts["live"], counts["other"], counts["error"])
	if counts["dead"] != 0 {
		t.Errorf("%d of %d requests were routed to the dead origin", counts["dead"], total)
	}
	if counts["live"] != total {
		t.Errorf("only %d of %d requests went to the live origin (other: %d, first %q; errors %d)",
			counts["live"], total, counts["other"], firstOther, counts["error"])
	}
	if got, _ := streamOrigins(gw, name); got[dead.id] != "" {
		t.Errorf("the gateway lists the dead origin again: %v", got)
	}
	lines, _ := gw.logLines(logFrom)
	logged := 0
	for _, l := range lines {
		if strings.Contains(l, `"err":"stale:`) && strings.Contains(l, dead.id) {
			logged++
		}
	}
	staleAfter := staleTotal(t, gw)
	t.Logf("peergate_registry_stale_total went %d -> %d; %d log lines", staleBefore, staleAfter, logged)
	// Every replayed heartbeat and every snapshot's read of the replayed record is counted.
	if staleAfter-staleBefore < replays/2 || logged == 0 {
		t.Errorf("the gateway counted %d stale values and logged %d for %d replays: did the replay reach it?",
			staleAfter-staleBefore, logged, replays)
	}
}

// TestDuplicatePublishRefused: ffmpeg publishes NAME to origin A; a second ffmpeg publishing
// the same NAME to origin B is refused over RTMP and RTSP and nothing goes live on B; once A's
// publisher stops, B accepts the NAME; an origin with publish.allow_duplicates accepts it
// while B still publishes.
func TestDuplicatePublishRefused(t *testing.T) {
	t.Parallel()
	mediatest.Tool(t, "ffmpeg")
	rs := redistest.Standalone(t)
	a := startMediaOrigin(t, "dup-a", rs.URL(), "")
	b := startMediaOrigin(t, "dup-b", rs.URL(), "")
	gw := startGateway(t, "gw-dup", rs.URL())
	waitReady(t, gw)
	const name = "live/dup"
	src := mediatest.Source{Size: "320x240"}

	pa := mediatest.PublishRTMP(t, "rtmp://"+a.rtmp+"/"+name, src)
	var last map[string]string
	if !mediatest.Eventually(30*time.Second, func() bool {
		last, _ = streamOrigins(gw, name)
		return last[a.id] == "running"
	}) {
		t.Fatalf("%s never ran on %s (gateway lists %v); ffmpeg: %s", name, a.id, last, pa.Output())
	}

	for _, c := range []struct{ proto, url string }{
		{"rtmp", "rtmp://" + b.rtmp + "/" + name},
		{"rtsp", "rtsp://" + b.rtsp + "/" + name},
	} {
		var p *mediatest.Proc
		if c.proto == "rtmp" {
			p = mediatest.PublishRTMP(t, c.url, src)
		} else {
			p = mediatest.PublishRTSP(t, c.url, "tcp", src)
		}
		err, done := p.Wait(30 * time.Second)
		if !done {
			p.Stop()
			t.Fatalf("%s duplicate on %s: ffmpeg still publishing after 30s", c.proto, b.id)
		}
		if err == nil {
			t.Fatalf("%s duplicate on %s: ffmpeg exited cleanly, want a refusal: %s", c.proto, b.id, p.Output())
		}
		out := p.Output()
		t.Logf("%s duplicate refused; ffmpeg said: %s", c.proto, lastLines(out, 3))
		if want := map[string]string{"rtmp": "already being published", "rtsp": "409"}[c.proto]; !strings.Contains(out, want) {
			t.Errorf("%s refusal: ffmpeg output lacks %q", c.proto, want)
		}
	}
	if got, _ := streamOrigins(gw, name); got[b.id] != "" || got[a.id] != "running" {
		t.Fatalf("after the refusals the gateway lists %v, want only %s", got, a.id)
	}

	// A's publisher leaves: its claim is released and B takes the NAME.
	pa.Stop()
	var pb *mediatest.Proc
	if !mediatest.EventuallyEvery(30*time.Second, 200*time.Millisecond, func() bool {
		if pb != nil {
			select {
			case <-pb.Done():
				pb = nil // refused while A's claim was still held: try again
			default:
			}
		}
		if pb == nil {
			pb = mediatest.PublishRTMP(t, "rtmp://"+b.rtmp+"/"+name, src)
		}
		last, _ = streamOrigins(gw, name)
		return last[b.id] == "running"
	}) {
		t.Fatalf("after A's publisher stopped, B never ran %s (gateway lists %v)", name, last)
	}

	// An origin that allows duplicates takes the NAME while B publishes it.
	c := startMediaOrigin(t, "dup-c", rs.URL(), "", "PEERGATE_PUBLISH_ALLOW_DUPLICATES=true")
	pc := mediatest.PublishRTMP(t, "rtmp://"+c.rtmp+"/"+name, src)
	if !mediatest.Eventually(30*time.Second, func() bool {
		last, _ = streamOrigins(gw, name)
		return last[c.id] == "running" && last[b.id] == "running"
	}) {
		t.Fatalf("with publish.allow_duplicates, %s never ran on %s beside %s (gateway lists %v); ffmpeg: %s",
			name, c.id, b.id, last, pc.Output())
	}
	pb.Stop()
	pc.Stop()
}

// staleTotal reads peergate_registry_stale_total from the gateway's /metrics.
func staleTotal(t *testing.T, gw *proc) int {
	t.Helper()
	res, err := http.Get("http://" + gw.addr("admin") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "peergate_registry_stale_total "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", l, err)
			}
			return int(n)
		}
	}
	t.Fatal("no peergate_registry_stale_total in /metrics")
	return 0
}

// The registry's key layout (shared/registry/keys.go), as an attacker with Redis access sees it.
func eventsKey() string { return "pg:" + registry.Namespace(clusterKey) + ":events" }
func indexKey() string  { return "pg:" + registry.Namespace(clusterKey) + ":origins" }
func recKeyOf(id string) string {
	ns := registry.Namespace(clusterKey)
	return "pg:" + ns + ":{" + ns + ":" + id + "}:rec"
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}
