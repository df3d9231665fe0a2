package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// bounded is a context for reads in tests: a read that would wait forever fails after 5 s.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
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

	ctx := bounded(t)
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
	u, _ := rd.Read(bounded(t))
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
	ctx := bounded(t)
	// The publisher writes unit i+1 only after the fast reader took one more unit, so the
	// fast queue (the cached key frame plus at most one unit) never fills, while slow never
	// reads and overflows on the fourth write.
	acks := make(chan struct{}, 256)
	wrote := make(chan error, 1)
	go func() {
		for i := 1; i <= 200; i++ {
			st.WriteUnit(Unit{Track: 1, PTS: time.Duration(i), Frame: []byte{1}})
			select {
			case <-acks:
			case <-ctx.Done():
				wrote <- fmt.Errorf("fast reader took no unit after unit %d", i)
				return
			}
		}
		st.Close()
		wrote <- nil
	}()
	got := 0
	for {
		if _, err := fast.Read(ctx); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("fast reader after %d units: %v (the publisher blocked?)", got, err)
			}
			break
		}
		got++
		acks <- struct{}{}
	}
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("publisher still writing 5 s after the fast reader got EOF")
	}
	var err error
	for err == nil {
		_, err = slow.Read(ctx)
	}
	if !errors.Is(err, ErrSlowReader) {
		t.Fatalf("slow reader: %v", err)
	}
	if got != 201 {
		t.Fatalf("fast reader got %d units, want the cached key frame and all 200", got)
	}
}

func TestEventsInOrder(t *testing.T) {
	t.Parallel()
	ev := newRec()
	tbl := NewTable(Config{})
	tbl.Notify(ev)
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
	// A publisher that never sent a key frame is never announced, so never stopped. Events
	// come in order from one goroutine: the next event, for a stream announced after live/y
	// ended, is proof that nothing about live/y was queued before it.
	st2, _ := tbl.Publish("live/y", testTracks())
	st2.Close()
	st3, _ := tbl.Publish("live/z", testTracks())
	st3.WriteUnit(Unit{Track: 0, AU: [][]byte{idr}})
	if e := ev.next(t); e != "running live/z avc1.64001f,mp4a.40.2" {
		t.Fatalf("event %q, want live/z running (nothing for live/y)", e)
	}
	st3.Close()
	if e := ev.next(t); e != "stopped live/z" {
		t.Fatalf("event %q", e)
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
	// Deliberate: a rate needs time to pass since NewLoadMeter; 10 ms is ages for a clock
	// that counts nanoseconds, and nothing here waits for another goroutine.
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

func TestTableCloseEndsStreams(t *testing.T) {
	t.Parallel()
	ev := newRec()
	tbl := NewTable(Config{})
	tbl.Notify(ev)
	st, _ := tbl.Publish("s", testTracks())
	st.WriteUnit(Unit{Track: 0, AU: [][]byte{idr}})
	rd, _ := st.AddReader(ReaderOptions{})
	tbl.Close()
	select {
	case <-st.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("stream not done 5 s after the table closed")
	}
	ev.next(t)
	if e := ev.next(t); e != "stopped s" {
		t.Fatalf("event %q", e)
	}
	var err error
	ctx := bounded(t)
	for err == nil {
		_, err = rd.Read(ctx)
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("reader: %v", err)
	}
	if _, err := tbl.Publish("t", testTracks()); !errors.Is(err, ErrTableClosed) {
		t.Fatalf("publish after close: %v", err)
	}
}

// TestEventLatency: StreamRunning follows the first key frame, and StreamStopped the
// publisher's Close. Both must arrive (within 5 s); how long they took is logged, not
// asserted: a loaded machine may hold the event goroutine for a while.
func TestEventLatency(t *testing.T) {
	t.Parallel()
	ev := &timedEvents{ch: make(chan time.Time, 10)}
	tbl := NewTable(Config{})
	tbl.Notify(ev)
	defer tbl.Close()
	st, _ := tbl.Publish("live/t", testTracks())
	t0 := time.Now()
	st.WriteUnit(Unit{Track: 0, AU: [][]byte{idr}})
	running := ev.next(t, "StreamRunning").Sub(t0)
	t1 := time.Now()
	st.Close()
	stopped := ev.next(t, "StreamStopped").Sub(t1)
	t.Logf("StreamRunning %v after the first key frame, StreamStopped %v after Close", running, stopped)
}

type timedEvents struct{ ch chan time.Time }

func (e *timedEvents) StreamRunning(string, cluster.StreamMeta) { e.ch <- time.Now() }
func (e *timedEvents) StreamStopped(string)                     { e.ch <- time.Now() }

func (e *timedEvents) next(t *testing.T, what string) time.Time {
	t.Helper()
	select {
	case at := <-e.ch:
		return at
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s within 5 s", what)
		return time.Time{}
	}
}

// prepareCases are access units through PrepareAU on an H.264 track that knows sps720/pps,
// or an H.265 track without parameter sets; FuzzPrepareAU starts from them.
var prepareCases = []struct {
	desc  string
	hevc  bool
	au    [][]byte
	key   bool
	first []byte // NAL unit header bytes expected first in the output, one per NAL unit
}{
	{"idr gets the parameter sets", false, [][]byte{idr}, true, []byte{0x67, 0x68, 0x65}},
	{"in-band parameter sets not repeated", false, [][]byte{sps720, pps, idr}, true, []byte{0x67, 0x68, 0x65}},
	{"non-key slice unchanged", false, [][]byte{slice}, false, []byte{0x41}},
	{"empty NAL units dropped", false, [][]byte{{}, slice, {}}, false, []byte{0x41}},
	{"empty access unit", false, [][]byte{}, false, nil},
	{"only empty NAL units", false, [][]byte{{}, {}}, false, nil},
	{"h265 IDR without known parameter sets", true, [][]byte{{0x26, 0x01, 0xaf}}, true, []byte{0x26}},
	{"h265 trailing picture", true, [][]byte{{0x02, 0x01, 0xd0}}, false, []byte{0x02}},
	{"h265 short NAL unit", true, [][]byte{{0x40}, {0x26, 0x01}}, true, []byte{0x40, 0x26}},
}

func prepareFormat(hevc bool) format.Format {
	if hevc {
		return &format.H265{PayloadTyp: 96}
	}
	return &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: sps720, PPS: pps}
}

func TestPrepareAU(t *testing.T) {
	t.Parallel()
	for _, c := range prepareCases {
		out, key := PrepareAU(prepareFormat(c.hevc), c.au)
		var first []byte
		for _, n := range out {
			if len(n) == 0 {
				t.Errorf("%s: empty NAL unit in the output", c.desc)
				continue
			}
			first = append(first, n[0])
		}
		if key != c.key || string(first) != string(c.first) {
			t.Errorf("%s: key %v, NAL units % x; want key %v, % x", c.desc, key, first, c.key, c.first)
		}
	}
}

// auSep joins the NAL units of a fuzzed access unit (an Annex B start code).
var auSep = []byte{0, 0, 1}

func FuzzPrepareAU(f *testing.F) {
	for _, c := range prepareCases {
		f.Add(bytes.Join(c.au, auSep), c.hevc)
	}
	f.Fuzz(func(t *testing.T, data []byte, hevc bool) {
		au := bytes.Split(data, auSep)
		out, _ := PrepareAU(prepareFormat(hevc), au)
		for _, n := range out {
			if len(n) == 0 {
				t.Fatalf("empty NAL unit out of % x", data)
			}
		}
		// Through a stream too: a reader and the metadata must survive whatever came in.
		tbl := NewTable(Config{})
		defer tbl.Close()
		tr := &Track{Format: prepareFormat(hevc)}
		st, err := tbl.Publish("f", []*Track{tr})
		if err != nil {
			t.Fatal(err)
		}
		rd, _ := st.AddReader(ReaderOptions{})
		st.WriteUnit(Unit{AU: au})
		st.WriteUnit(Unit{AU: append([][]byte{{}}, au...)})
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
