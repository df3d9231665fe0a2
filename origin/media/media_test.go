package media

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/peergate/peergate/shared/cluster"
)

// sps720 is a 1280x720 High profile level 3.1 SPS (from mediacommon's tests).
var sps720 = []byte{
	0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50,
	0x05, 0xbb, 0x01, 0x6c, 0x80, 0x00, 0x00, 0x03,
	0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18,
	0xcb,
}

var pps = []byte{0x68, 0xee, 0x3c, 0x80}

func testTracks() []*Track {
	return []*Track{
		{Format: &format.H264{PayloadTyp: 96, SPS: sps720, PPS: pps, PacketizationMode: 1}},
		{Format: &format.MPEG4Audio{PayloadTyp: 97, Config: &mpeg4audio.AudioSpecificConfig{
			Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 44100, ChannelConfig: 2, ChannelCount: 2,
		}, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}},
	}
}

var (
	idr   = []byte{0x65, 0x88, 0x84}
	slice = []byte{0x41, 0x9a, 0x02}
)

type recEvents struct {
	mu  sync.Mutex
	evs []string
	ch  chan string
}

func newRec() *recEvents { return &recEvents{ch: make(chan string, 100)} }

func (r *recEvents) StreamRunning(name string, m cluster.StreamMeta) {
	r.ch <- "running " + name + " " + m.Codecs
}
func (r *recEvents) StreamStopped(name string) { r.ch <- "stopped " + name }

func (r *recEvents) next(t *testing.T) string {
	t.Helper()
	select {
	case e := <-r.ch:
		return e
	case <-time.After(2 * time.Second):
		t.Fatal("no event")
		return ""
	}
}

func TestPublishRefusedWhileLive(t *testing.T) {
	t.Parallel()
	tbl := NewTable(Config{})
	defer tbl.Close()
	st, err := tbl.Publish("live/cam1", testTracks())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.Publish("live/cam1", testTracks()); !errors.Is(err, ErrAlreadyPublishing) {
		t.Fatalf("second publish: %v", err)
	}
	if _, err := tbl.Claim("live/cam1"); !errors.Is(err, ErrAlreadyPublishing) {
		t.Fatalf("claim: %v", err)
	}
	if _, err := tbl.Publish("../x", testTracks()); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("bad name: %v", err)
	}
	st.Close()
	st2, err := tbl.Publish("live/cam1", testTracks())
	if err != nil {
		t.Fatalf("publish after close: %v", err)
	}
	st2.Close()
}

func TestClaimHiddenUntilPublished(t *testing.T) {
	t.Parallel()
	tbl := NewTable(Config{})
	defer tbl.Close()
	c, err := tbl.Claim("a")
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Get("a") != nil {
		t.Fatal("claimed name visible to readers")
	}
	if !tbl.Live("a") {
		t.Fatal("claim not live for publishers")
	}
	c.Release()
	if tbl.Live("a") {
		t.Fatal("release kept the name")
	}
	c2, _ := tbl.Claim("a")
	if _, err := c2.Publish([]*Track{{Format: &format.Generic{}}}); !errors.Is(err, ErrNoTracks) {
		t.Fatalf("unsupported tracks: %v", err)
	}
	c2.Release()
}

func TestReaderStartsAtCachedGOPAndGetsEOF(t *testing.T) {
	t.Parallel()
	tbl := NewTable(Config{})
	defer tbl.Close()
	st, _ := tbl.Publish("s", testTracks())
	st.WriteUnit(Unit{Track: 0, PTS: 0, AU: [][]byte{slice}}) // before any key frame: not cached
	st.WriteUnit(Unit{Track: 0, PTS: 1, AU: [][]byte{idr}})
	st.WriteUnit(Unit{Track: 1, PTS: 2, Frame: []byte{1, 2}})
	st.WriteUnit(Unit{Track: 0, PTS: 3, AU: [][]byte{slice}})

	ctx := context.Background()
	_, rd, err := tbl.Subscribe(ctx, "s", ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := rd.Read(ctx)
	if !u.KeyFrame || u.PTS != 1 {
		t.Fatalf("first unit %+v, want the cached key frame", u)
	}
	if len(u.AU) != 3 || u.AU[0][0] != 0x67 || u.AU[1][0] != 0x68 {
		t.Fatalf("key frame without prepended SPS/PPS: %x", u.AU)
	}
	if u, _ = rd.Read(ctx); u.Track != 1 {
		t.Fatalf("second unit %+v", u)
	}
	if u, _ = rd.Read(ctx); u.PTS != 3 {
		t.Fatalf("third unit %+v", u)
	}
	st.WriteUnit(Unit{Track: 0, PTS: 4, AU: [][]byte{slice}})
	if u, _ = rd.Read(ctx); u.PTS != 4 {
		t.Fatalf("live unit %+v", u)
	}
	st.Close()
	if _, err := rd.Read(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v", err)
	}
	if _, err := st.AddReader(ReaderOptions{}); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("add reader after close: %v", err)
	}
}

func TestReaderWithoutGOPWaitsForKeyFrame(t *testing.T) {
	t.Parallel()
	tbl := NewTable(Config{GOPCacheBytes: 10})
	defer tbl.Close()
	st, _ := tbl.Publish("s", testTracks())
	st.WriteUnit(Unit{Track: 0, AU: [][]byte{idr, make([]byte, 100)}}) // overflows the cache
	rd, _ := st.AddReader(ReaderOptions{})
	st.WriteUnit(Unit{Track: 1, PTS: 1, Frame: []byte{1}})
	st.WriteUnit(Unit{Track: 0, PTS: 2, AU: [][]byte{slice}})
	st.WriteUnit(Unit{Track: 0, PTS: 3, AU: [][]byte{idr}})
	u, _ := rd.Read(context.Background())
	if !u.KeyFrame || u.PTS != 3 {
		t.Fatalf("first unit %+v, want the next key frame", u)
	}
	st.Close()
}

func TestSlowReaderDroppedOthersContinue(t *testing.T) {
	t.Parallel()
	tbl := NewTable(Config{})
	defer tbl.Close()
	st, _ := tbl.Publish("s", testTracks())
	st.WriteUnit(Unit{Track: 0, AU: [][]byte{idr}})
	slow, _ := st.AddReader(ReaderOptions{QueueLen: 4})
	fast, _ := st.AddReader(ReaderOptions{QueueLen: 4})
	ctx := context.Background()
	done := make(chan struct{})
	got := 0
	go func() {
		defer close(done)
		for {
			if _, err := fast.Read(ctx); err != nil {
				return
			}
			got++
		}
	}()
	// The publisher must never block although slow never reads.
	for i := 1; i <= 200; i++ {
		st.WriteUnit(Unit{Track: 1, PTS: time.Duration(i), Frame: []byte{1}})
		for len(fast.ch) > 2 {
			time.Sleep(time.Millisecond)
		}
	}
	st.Close()
	<-done
	var err error
	for err == nil {
		_, err = slow.Read(ctx)
	}
	if !errors.Is(err, ErrSlowReader) {
		t.Fatalf("slow reader: %v", err)
	}
	if got < 150 {
		t.Fatalf("fast reader got %d units", got)
	}
}

func TestEventsInOrder(t *testing.T) {
	t.Parallel()
	ev := newRec()
	tbl := NewTable(Config{Events: ev})
	defer tbl.Close()
	st, _ := tbl.Publish("live/x", testTracks())
	st.WriteUnit(Unit{Track: 1, Frame: []byte{1}}) // audio before the key frame: not running yet
	st.WriteUnit(Unit{Track: 0, AU: [][]byte{idr}})
	if e := ev.next(t); e != "running live/x avc1.64001f,mp4a.40.2" {
		t.Fatalf("event %q", e)
	}
	if m := st.Meta(); m.Width != 1280 || m.Height != 720 {
		t.Fatalf("meta %+v", m)
	}
	st.Close()
	if e := ev.next(t); e != "stopped live/x" {
		t.Fatalf("event %q", e)
	}
	// A publisher that never sent a key frame is never announced, so never stopped.
	st2, _ := tbl.Publish("live/y", testTracks())
	st2.Close()
	select {
	case e := <-ev.ch:
		t.Fatalf("unexpected event %q", e)
	case <-time.After(50 * time.Millisecond):
	}
}

type starter struct {
	tbl  *Table
	asks chan string
}

func (s *starter) Start(name string) bool {
	if name != "ondemand/a" {
		return false
	}
	s.asks <- name
	return true
}

func TestOnDemandWaitsForPublisher(t *testing.T) {
	t.Parallel()
	sr := &starter{asks: make(chan string, 10)}
	tbl := NewTable(Config{Starter: sr, StartTimeout: 2 * time.Second})
	defer tbl.Close()
	ctx := context.Background()
	if _, err := tbl.Find(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	res := make(chan error, 1)
	go func() {
		_, rd, err := tbl.Subscribe(ctx, "ondemand/a", ReaderOptions{})
		if err == nil {
			rd.Close()
		}
		res <- err
	}()
	<-sr.asks
	st, err := tbl.Publish("ondemand/a", testTracks())
	if err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil {
		t.Fatalf("waiting reader: %v", err)
	}
	st.Close()

	tbl2 := NewTable(Config{Starter: sr, StartTimeout: 50 * time.Millisecond})
	defer tbl2.Close()
	if _, err := tbl2.Find(ctx, "ondemand/a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("timed-out start: %v", err)
	}
}

func TestViewerAccountingAndLoad(t *testing.T) {
	t.Parallel()
	tbl := NewTable(Config{})
	defer tbl.Close()
	st, _ := tbl.Publish("s", testTracks())
	lm := tbl.NewLoadMeter()
	v1 := st.Join(ProtoRTMP)
	v2 := st.Join(ProtoRTSP)
	v1.Sent(1000)
	tbl.AddEgress(ProtoHLS, 500)
	if st.Viewers() != 2 {
		t.Fatalf("viewers %d", st.Viewers())
	}
	s := tbl.Stats()
	if s.Streams != 1 || s.Clients != 2 || s.EgressBytes != 1500 || len(s.Protocols) != 3 {
		t.Fatalf("stats %+v", s)
	}
	time.Sleep(10 * time.Millisecond)
	l := lm.Sample()
	if l.Clients != 2 || l.EgressBps <= 0 || l.CPU < 0 || l.CPU > 1 {
		t.Fatalf("load %+v", l)
	}
	v1.Leave()
	v1.Leave()
	v2.Leave()
	if st.Viewers() != 0 || tbl.Stats().Clients != 0 {
		t.Fatal("leave not counted once")
	}
	st.Close()
}

func TestClockConversion(t *testing.T) {
	t.Parallel()
	long := 400 * time.Hour
	if got := ToClock(long, 90000); got != int64(400*3600*90000) {
		t.Fatalf("ToClock %d", got)
	}
	if got := FromClock(ToClock(long+time.Second/3, 90000), 90000); got-long-time.Second/3 > time.Microsecond*12 {
		t.Fatalf("round trip %v", got)
	}
}

func TestTableCloseEndsStreams(t *testing.T) {
	t.Parallel()
	ev := newRec()
	tbl := NewTable(Config{Events: ev})
	st, _ := tbl.Publish("s", testTracks())
	st.WriteUnit(Unit{Track: 0, AU: [][]byte{idr}})
	rd, _ := st.AddReader(ReaderOptions{})
	tbl.Close()
	<-st.Done()
	ev.next(t)
	if e := ev.next(t); e != "stopped s" {
		t.Fatalf("event %q", e)
	}
	var err error
	for err == nil {
		_, err = rd.Read(context.Background())
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("reader: %v", err)
	}
	if _, err := tbl.Publish("t", testTracks()); !errors.Is(err, ErrTableClosed) {
		t.Fatalf("publish after close: %v", err)
	}
}

func TestFindWaitsForClaimedName(t *testing.T) {
	t.Parallel()
	tbl := NewTable(Config{StartTimeout: 2 * time.Second})
	defer tbl.Close()
	c, err := tbl.Claim("live/slow")
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		_, err := tbl.Find(context.Background(), "live/slow")
		res <- err
	}()
	time.Sleep(20 * time.Millisecond)
	st, err := c.Publish(testTracks())
	if err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil {
		t.Fatalf("reader of a claimed name: %v", err)
	}
	st.Close()
}

// TestEventLatency: StreamRunning follows the first key frame, and StreamStopped the
// publisher's Close, within 100 ms.
func TestEventLatency(t *testing.T) {
	t.Parallel()
	ev := &timedEvents{ch: make(chan time.Time, 10)}
	tbl := NewTable(Config{Events: ev})
	defer tbl.Close()
	st, _ := tbl.Publish("live/t", testTracks())
	t0 := time.Now()
	st.WriteUnit(Unit{Track: 0, AU: [][]byte{idr}})
	if d := (<-ev.ch).Sub(t0); d > 100*time.Millisecond {
		t.Fatalf("running after %v", d)
	}
	t1 := time.Now()
	st.Close()
	if d := (<-ev.ch).Sub(t1); d > 100*time.Millisecond {
		t.Fatalf("stopped after %v", d)
	}
}

type timedEvents struct{ ch chan time.Time }

func (e *timedEvents) StreamRunning(string, cluster.StreamMeta) { e.ch <- time.Now() }
func (e *timedEvents) StreamStopped(string)                     { e.ch <- time.Now() }

func FuzzPrepareAU(f *testing.F) {
	f.Add([]byte{0x65, 0x88}, []byte{0x67, 0x64}, false)
	f.Add(sps720, pps, false)
	f.Add([]byte{0x26, 0x01, 0xaf}, []byte{0x40, 0x01, 0x0c}, true)
	f.Add([]byte{}, []byte{0x42, 0x01}, true)
	f.Fuzz(func(t *testing.T, a, b []byte, hevc bool) {
		tbl := NewTable(Config{})
		defer tbl.Close()
		var tr *Track
		if hevc {
			tr = &Track{Format: &format.H265{PayloadTyp: 96}}
		} else {
			tr = &Track{Format: &format.H264{PayloadTyp: 96, PacketizationMode: 1}}
		}
		st, err := tbl.Publish("f", []*Track{tr})
		if err != nil {
			t.Fatal(err)
		}
		rd, _ := st.AddReader(ReaderOptions{})
		st.WriteUnit(Unit{AU: [][]byte{a, b}})
		st.WriteUnit(Unit{AU: [][]byte{b, a, {}}})
		_ = Meta(st.Tracks())
		rd.Close()
		st.Close()
	})
}

// BenchmarkFanout writes one 2 Mbit/s-sized video unit (10 KB at 25 fps) to 200 readers.
func BenchmarkFanout(b *testing.B) {
	tbl := NewTable(Config{})
	defer tbl.Close()
	st, _ := tbl.Publish("bench", testTracks())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		rd, _ := st.AddReader(ReaderOptions{QueueLen: 4096})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := rd.Read(ctx); err != nil {
					return
				}
			}
		}()
	}
	frame := make([]byte, 10000)
	frame[0] = 0x41
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		au := [][]byte{frame}
		if i%50 == 0 {
			au = [][]byte{idr}
		}
		st.WriteUnit(Unit{Track: 0, PTS: time.Duration(i) * 40 * time.Millisecond, AU: au})
	}
	b.StopTimer()
	st.Close()
	wg.Wait()
}

func TestTryJoinCap(t *testing.T) {
	tbl := NewTable(Config{MaxViewers: 2})
	defer tbl.Close()
	st, err := tbl.Publish("live/cap", []*Track{{Format: &format.Opus{PayloadTyp: 96, ChannelCount: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := st.TryJoin(ProtoRTMP)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.TryJoin(ProtoHLS); err != nil {
		t.Fatal(err)
	}
	if _, err := st.TryJoin(ProtoRTSP); !errors.Is(err, ErrTooManyViewers) {
		t.Fatalf("third viewer: %v, want ErrTooManyViewers", err)
	}
	if got := tbl.Stats().Clients; got != 2 {
		t.Fatalf("clients = %d, want 2", got)
	}
	a.Leave()
	if _, err := st.TryJoin(ProtoRTSP); err != nil {
		t.Fatalf("after a leave: %v", err)
	}
}
