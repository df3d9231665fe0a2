package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/internal/poll"
	"github.com/peergate/peergate/internal/redistest"
)

// treeNode is one origin of /api/v1/tree.
type treeNode struct {
	OriginID    string     `json:"origin_id"`
	OriginState string     `json:"origin_state"`
	Upstream    string     `json:"upstream"`
	Depth       int        `json:"depth"`
	Clients     int64      `json:"clients"`
	Relays      []treeNode `json:"relays"`
}

// relayTree is /api/v1/tree's answer.
type relayTree struct {
	Name     string     `json:"name"`
	Owners   []treeNode `json:"owners"`
	Detached []treeNode `json:"detached"`
	Relays   int        `json:"relays"`
	Depth    int        `json:"depth"`
}

// walk calls f for every node of the tree, owners and detached subtrees alike.
func (tr *relayTree) walk(f func(n *treeNode)) {
	var rec func(ns []treeNode)
	rec = func(ns []treeNode) {
		for i := range ns {
			f(&ns[i])
			rec(ns[i].Relays)
		}
	}
	rec(tr.Owners)
	rec(tr.Detached)
}

func (tr *relayTree) String() string {
	var b strings.Builder
	var rec func(ns []treeNode, indent string)
	rec = func(ns []treeNode, indent string) {
		for _, n := range ns {
			fmt.Fprintf(&b, "%s%s (%s, %d clients)\n", indent, n.OriginID, n.OriginState, n.Clients)
			rec(n.Relays, indent+"  ")
		}
	}
	rec(tr.Owners, "")
	if len(tr.Detached) > 0 {
		b.WriteString("detached:\n")
		rec(tr.Detached, "  ")
	}
	return b.String()
}

// getTree asks the gateway's admin API for name's relay tree.
func getTree(gw *proc, name string) (*relayTree, error) {
	res, err := http.Get("http://" + gw.addr("admin") + "/api/v1/tree?name=" + name)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("tree: status %d", res.StatusCode)
	}
	var tr relayTree
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil {
		return nil, err
	}
	return &tr, nil
}

// playAttempt is one run of a player's ffmpeg.
type playAttempt struct {
	ua     string // distinct per attempt: an origin's "rtsp play" log line names who served it
	frames atomic.Int64
	ended  atomic.Bool

	mu   sync.Mutex
	host string // HLS: the host:port ffmpeg last opened a playlist or segment on
}

func (a *playAttempt) lastHost() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.host
}

// Stall bounds: a player gives up on an attempt whose frame count stopped (an HLS client
// keeps retrying a dead origin's playlist rather than ending), as real players do.
const (
	stallFirst = 40 * time.Second // no first frame
	stallAfter = 10 * time.Second // frames stopped advancing
)

// retryingPlayer plays a URL through the gateway with ffmpeg, decoding video, and starts
// again (a new attempt, through the gateway) whenever ffmpeg ends or stalls, as a player that
// retries does, until ctx ends.
type retryingPlayer struct {
	id  int
	url string // rtsp:// or an HLS playlist, at the gateway

	mu       sync.Mutex
	attempts []*playAttempt
}

func (p *retryingPlayer) latest() (int, *playAttempt) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.attempts) == 0 {
		return -1, &playAttempt{} // not started yet
	}
	return len(p.attempts) - 1, p.attempts[len(p.attempts)-1]
}

func (p *retryingPlayer) run(ctx context.Context) {
	for k := 0; ctx.Err() == nil; k++ {
		a := &playAttempt{ua: fmt.Sprintf("relaykill-viewer-%d-%d", p.id, k)}
		p.mu.Lock()
		p.attempts = append(p.attempts, a)
		p.mu.Unlock()
		p.play(ctx, a)
		a.ended.Store(true)
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (p *retryingPlayer) play(ctx context.Context, a *playAttempt) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "info", "-threads", "1"}
	if !strings.HasPrefix(p.url, "rtmp://") { // ffmpeg's RTMP client has no user agent option
		args = append(args, "-user_agent", a.ua)
	}
	if strings.HasPrefix(p.url, "rtsp://") {
		args = append(args, "-rtsp_transport", "tcp", "-timeout", "10000000")
	}
	args = append(args, "-i", p.url, "-map", "0:v:0", "-f", "null", "-progress", "pipe:1", "-")
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return
	}
	errOut, err := cmd.StderrPipe()
	if err != nil {
		return
	}
	if err := cmd.Start(); err != nil {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		// HLS: "Opening 'http://HOST:PORT/...' for reading" tells which origin serves.
		sc := bufio.NewScanner(errOut)
		for sc.Scan() {
			line := sc.Text()
			if _, rest, ok := strings.Cut(line, "Opening 'http://"); ok {
				if host, _, ok := strings.Cut(rest, "/"); ok {
					a.mu.Lock()
					a.host = host
					a.mu.Unlock()
				}
			}
		}
	})
	wg.Go(func() {
		last, since := int64(0), time.Now()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			f := a.frames.Load()
			if f != last {
				last, since = f, time.Now()
				continue
			}
			bound := stallAfter
			if f == 0 {
				bound = stallFirst
			}
			if time.Since(since) > bound {
				cancel()
				return
			}
		}
	})
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "frame="); ok {
			if f, err := strconv.Atoi(strings.TrimSpace(n)); err == nil {
				a.frames.Store(int64(f))
			}
		}
	}
	_ = cmd.Wait()
	cancel()
}

// TestRelayKill (issue 9, "killing a relay mid-stream"): an owner with capacity.max_clients 4
// and three origins of capacity 10 able to relay; 14 viewers (10 RTSP, 4 HLS, all ffmpeg
// decoding video) arrive through the gateway one by one, so the owner fills, a first relay
// takes the overflow up to spill_at (8 of 10), and a second relay pulls from the first, which
// still has room while the owner is full (a relay of a relay). The admin API's tree shows that chain. The first relay is SIGKILLed: its viewers
// see EOF or stall and come back through the gateway like retrying players (those of the
// relay below it keep playing: it continues its stream from a live copy, TestRelayHandover); every viewer decodes frames again
// from a live origin; the relay below moves to a live upstream at its first retry and stays
// in the tree; the tree drops the dead relay once its heartbeat TTL runs out, nothing is left
// detached and every relay pulls from a live origin. Every redirect the gateway logged names
// its route.
func TestRelayKill(t *testing.T) {
	t.Parallel()
	mediatest.Tool(t, "ffmpeg")
	rs := redistest.Standalone(t)
	const name = "live/big"
	own := startMediaOrigin(t, "rk-own", rs.URL(), "streams:\n  - name: "+name+"\n    source: "+mediatest.Demo(t)+"\n",
		"PEERGATE_CAPACITY_MAX_CLIENTS=4")
	origins := map[string]*mediaOrigin{own.id: own}
	for i := range 3 {
		r := startMediaOrigin(t, fmt.Sprintf("rk-r%d", i+1), rs.URL(), "",
			"PEERGATE_CAPACITY_MAX_CLIENTS=10", "PEERGATE_ONDEMAND_IDLE_TIMEOUT=60s")
		origins[r.id] = r
	}
	gw := startGateway(t, "gw", rs.URL())
	waitReady(t, gw)
	poll.T(t, 20*time.Second, func() bool {
		m, _ := streamOrigins(gw, name)
		return m[own.id] == "running"
	}, "%s never ran on %s", name, own.id)

	// servedBy finds the origin whose log shows the attempt's RTSP play (remembered: an
	// attempt plays on one origin).
	var servedMu sync.Mutex
	served := map[string]string{}
	servedBy := func(a *playAttempt) string {
		servedMu.Lock()
		defer servedMu.Unlock()
		if id, ok := served[a.ua]; ok {
			return id
		}
		if h := a.lastHost(); h != "" { // HLS
			for id, o := range origins {
				if o.http == h {
					return id
				}
			}
			return "?" + h
		}
		for id, o := range origins {
			for _, rec := range logRecords(o.p, "rtsp play") {
				if ua, _ := rec["user_agent"].(string); strings.HasPrefix(ua, "relaykill-viewer-") {
					served[ua] = id
				}
			}
		}
		return served[a.ua]
	}
	// viewersIn is what the tree's client counts say about viewers: every relay's pull is
	// one client of its upstream, the rest are viewers.
	viewersIn := func(tr *relayTree) int64 {
		var n int64
		tr.walk(func(x *treeNode) { n += x.Clients })
		return n - int64(tr.Relays)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	const n = 14
	players := make([]*retryingPlayer, n)
	for i := range players {
		p := &retryingPlayer{id: i, url: "rtsp://" + gw.addr("rtsp") + "/" + name}
		if i%3 == 2 {
			p.url = "http://" + gw.addr("http") + "/" + name + "/index.m3u8"
		}
		players[i] = p
		wg.Go(func() { p.run(ctx) })
		// The next viewer arrives once this one plays and the gateway has seen its origin's
		// load: placement then follows capacity, not the heartbeat's timing.
		if !poll.Every(60*time.Second, 100*time.Millisecond, func() bool {
			_, a := p.latest()
			if a.frames.Load() == 0 {
				return false
			}
			tr, err := getTree(gw, name)
			return err == nil && viewersIn(tr) >= int64(i+1)
		}) {
			t.Fatalf("viewer %d did not play, or the gateway never counted it", i)
		}
	}
	tr, err := getTree(gw, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tree with %d viewers:\n%s", n, tr)

	// The victim: a relay serving viewers with a relay of its own below it.
	var victim, child string
	tr.walk(func(x *treeNode) {
		if victim == "" && x.Upstream != "" && x.Clients > 0 && len(x.Relays) > 0 {
			victim, child = x.OriginID, x.Relays[0].OriginID
		}
	})
	if victim == "" {
		t.Fatalf("no relay of a relay formed:\n%s", tr)
	}
	if len(tr.Detached) != 0 {
		t.Fatalf("detached relays before the kill:\n%s", tr)
	}
	type mark struct {
		idx    int
		frames int64
		on     string
	}
	marks := make([]mark, n)
	onVictim := 0
	for i, p := range players {
		idx, a := p.latest()
		marks[i] = mark{idx: idx, frames: a.frames.Load(), on: servedBy(a)}
		if marks[i].on == victim {
			onVictim++
		}
	}
	if onVictim == 0 {
		t.Fatalf("the tree shows clients on %s but no viewer's play is in its log", victim)
	}
	t.Logf("killing %s (%d viewers; %s pulls from it)", victim, onVictim, child)
	childStarts := len(logRecords(origins[child].p, "on-demand pull running"))
	childFails := len(logRecords(origins[child].p, "on-demand pull failed"))
	killedAt := time.Now()
	origins[victim].p.signal(syscall.SIGKILL)
	if _, ok := origins[victim].p.wait(10 * time.Second); !ok {
		t.Fatalf("%s did not die", victim)
	}

	// Every viewer plays again from a live origin: those of the dead relay after a new
	// attempt through the gateway, the others on (or back to) a live copy.
	const again = 50 // two seconds of video
	status := func() (bool, string) {
		var bad []string
		for i, p := range players {
			idx, a := p.latest()
			progressed := a.frames.Load()
			if idx == marks[i].idx {
				progressed -= marks[i].frames
			}
			on := servedBy(a)
			switch {
			case marks[i].on == victim && idx == marks[i].idx:
				bad = append(bad, fmt.Sprintf("viewer %d still on its first attempt at %s", i, victim))
			case a.ended.Load() || progressed < again || origins[on] == nil || on == victim:
				bad = append(bad, fmt.Sprintf("viewer %d attempt %d on %q: %d new frames", i, idx, on, progressed))
			}
		}
		return len(bad) == 0, strings.Join(bad, "; ")
	}
	var last string
	if !poll.Every(120*time.Second, 500*time.Millisecond, func() bool {
		ok, why := status()
		last = why
		return ok
	}) {
		t.Fatalf("viewers did not all play again from live origins: %s", last)
	}
	t.Logf("every viewer decodes again %v after the kill", time.Since(killedAt).Round(100*time.Millisecond))
	for i, p := range players {
		if idx, a := p.latest(); idx != marks[i].idx {
			t.Logf("viewer %d (on %s) came back on %s after %d new attempts", i, marks[i].on, servedBy(a), idx-marks[i].idx)
		}
	}

	// The relay below the dead one pulled again, from a live origin.
	var moved bool
	for _, rec := range logRecords(origins[child].p, "on-demand pull running")[childStarts:] {
		if rec["relay_from"] == victim {
			t.Errorf("%s pulled again from the dead %s", child, victim)
		}
		moved = true
	}
	if !moved {
		t.Errorf("%s never pulled again after its upstream %s died", child, victim)
	}
	// At its first retry: the only failure from the dead relay is the drop itself, although
	// the registry still lists the dead relay, with room, for a TTL.
	var fromVictim int
	for _, rec := range logRecords(origins[child].p, "on-demand pull failed")[childFails:] {
		if rec["relay_from"] == victim {
			fromVictim++
		}
	}
	if fromVictim != 1 {
		t.Errorf("%s failed %d times pulling from the dead %s, want 1 (the drop, then another upstream)", child, fromVictim, victim)
	}

	// The tree heals: the dead relay leaves it once its TTL runs out, nothing is detached,
	// every relay pulls from a live origin of the tree.
	healed := func(tr *relayTree) string {
		live := map[string]bool{}
		tr.walk(func(x *treeNode) { live[x.OriginID] = true })
		var bad []string
		if live[victim] {
			bad = append(bad, victim+" still listed")
		}
		if len(tr.Detached) > 0 {
			bad = append(bad, "detached relays")
		}
		tr.walk(func(x *treeNode) {
			if x.Upstream != "" && (x.Upstream == victim || !live[x.Upstream]) {
				bad = append(bad, x.OriginID+" pulls from "+x.Upstream)
			}
		})
		return strings.Join(bad, "; ")
	}
	var why string
	if !poll.Every(60*time.Second, 200*time.Millisecond, func() bool {
		tr, err = getTree(gw, name)
		if err != nil {
			why = err.Error()
			return false
		}
		why = healed(tr)
		if why == "" {
			// The relay below the dead one keeps serving, from its new upstream.
			why = child + " left the tree"
			tr.walk(func(x *treeNode) {
				if x.OriginID == child {
					why = ""
				}
			})
		}
		return why == ""
	}) {
		t.Fatalf("the tree did not heal: %s\n%s", why, tr)
	}
	t.Logf("healed tree:\n%s", tr)

	// Why each viewer went where: every redirect the gateway logged names its route.
	routes := map[string]int{}
	for _, rec := range append(logRecords(gw, "rtsp connection"), logRecords(gw, "http request")...) {
		if rec["outcome"] != "ok" {
			continue
		}
		r, _ := rec["route"].(string)
		if r == "" {
			t.Errorf("redirect without a route: %v", rec)
		}
		routes[r]++
	}
	t.Logf("gateway routes: %v", routes)
	for _, want := range []string{"owner", "new_relay/spilled", "relay/spilled"} {
		if routes[want] == 0 {
			t.Errorf("no redirect logged route %q: %v", want, routes)
		}
	}
	if !slices.ContainsFunc(tr.Owners, func(o treeNode) bool { return o.OriginID == own.id }) {
		t.Errorf("the owner left the tree:\n%s", tr)
	}
}
