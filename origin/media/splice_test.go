package media

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

// spliceFixture is a stream fed by a source with a clock: video frame i at PTS i*40ms, a key
// frame every 10, audio unit i at PTS i*40ms+5ms, each stamped epoch+PTS.
type spliceFixture struct {
	t     *testing.T
	tbl   *Table
	st    *Stream
	rd    *Reader
	epoch time.Time
	ev    *recEvents
}

const frame = 40 * time.Millisecond

func newSpliceFixture(t *testing.T) *spliceFixture {
	f := &spliceFixture{t: t, tbl: NewTable(Config{}), epoch: time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC), ev: newRec()}
	t.Cleanup(f.tbl.Close)
	f.tbl.Notify(f.ev)
	st, err := f.tbl.Publish("live/relay", testTracks())
	if err != nil {
		t.Fatal(err)
	}
	f.st = st
	if f.rd, err = st.AddReader(ReaderOptions{}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *spliceFixture) video(i int, base time.Duration, clocked bool) Unit {
	nal := slice
	if i%10 == 0 {
		nal = idr
	}
	pts := time.Duration(i) * frame
	u := Unit{Track: 0, PTS: pts - base, DTS: pts - base, AU: [][]byte{nal, {0x01, byte(i)}}}
	if clocked {
		u.NTP = f.epoch.Add(pts)
	}
	return u
}

func (f *spliceFixture) audio(i int, base time.Duration, clocked bool) Unit {
	pts := time.Duration(i)*frame + 5*time.Millisecond
	u := Unit{Track: 1, PTS: pts - base, DTS: pts - base, Frame: []byte{byte(i)}}
	if clocked {
		u.NTP = f.epoch.Add(pts)
	}
	return u
}

// read drains the reader: the units it has now.
func (f *spliceFixture) read() []Unit {
	var out []Unit
	for {
		select {
		case u, ok := <-f.rd.C():
			if !ok {
				f.t.Fatalf("reader ended: %v", f.rd.Err())
			}
			out = append(out, u)
		default:
			return out
		}
	}
}

// frameOf is the frame index a video unit carries (its second NAL unit).
func frameOf(u Unit) int { return int(u.AU[len(u.AU)-1][1]) }

// TestSpliceContinues: a new source that repeats the stream's last GOP on its own timeline
// continues the stream right after the last frame written: no frame twice, none lost, on the
// stream's timeline, for the reader attached before the switch; the registry hears of it.
func TestSpliceContinues(t *testing.T) {
	f := newSpliceFixture(t)
	for i := 0; i <= 25; i++ { // the old upstream: frames 0..25, then it dies
		f.st.WriteUnit(f.video(i, 0, true))
		f.st.WriteUnit(f.audio(i, 0, true))
	}
	before := f.read()
	if len(before) != 52 {
		t.Fatalf("read %d units before the switch, want 52", len(before))
	}
	if e := f.ev.next(t); e != "running live/relay avc1.64001f,mp4a.40.2" {
		t.Fatalf("event %q", e)
	}

	sp, err := f.st.Splice(testTracks())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sp.Resumed():
		t.Fatal("resumed before any unit")
	default:
	}
	// The new upstream's pull starts its timeline at frame 20 (its cached GOP), and its
	// first units come before its first sender report (no NTP): they wait.
	const base = 20 * frame
	for i := 20; i <= 22; i++ {
		sp.WriteUnit(f.video(i, base, false))
		sp.WriteUnit(f.audio(i, base, false))
	}
	if got := f.read(); len(got) != 0 {
		t.Fatalf("%d units passed before the source clock was known", len(got))
	}
	for i := 23; i <= 40; i++ {
		sp.WriteUnit(f.video(i, base, true))
		sp.WriteUnit(f.audio(i, base, true))
	}
	select {
	case <-sp.Resumed():
	default:
		t.Fatal("not resumed")
	}
	after := f.read()
	var vids, auds []Unit
	for _, u := range after {
		if u.Track == 0 {
			vids = append(vids, u)
		} else {
			auds = append(auds, u)
		}
	}
	if len(vids) != 15 || len(auds) != 15 {
		t.Fatalf("after the switch: %d video and %d audio units, want 15 and 15 (frames 26..40)", len(vids), len(auds))
	}
	for k, u := range vids {
		i := 26 + k
		if frameOf(u) != i || u.PTS != time.Duration(i)*frame || u.DTS != u.PTS || !u.NTP.Equal(f.epoch.Add(u.PTS)) {
			t.Fatalf("video unit %d: frame %d PTS %v DTS %v NTP %v, want frame %d at %v", k, frameOf(u), u.PTS, u.DTS, u.NTP, i, time.Duration(i)*frame)
		}
	}
	for k, u := range auds {
		want := time.Duration(26+k)*frame + 5*time.Millisecond
		if u.PTS != want || int(u.Frame[0]) != 26+k {
			t.Fatalf("audio unit %d: PTS %v frame %d, want %v", k, u.PTS, u.Frame[0], want)
		}
	}
	// Frame 30 is a key frame and says so; the stream was announced again (the registry
	// lists the copy with its new upstream).
	if !vids[4].KeyFrame || vids[3].KeyFrame {
		t.Fatal("key frames not marked after the switch")
	}
	if e := f.ev.next(t); e != "running live/relay avc1.64001f,mp4a.40.2" {
		t.Fatalf("event %q after the switch", e)
	}
}

// TestSpliceAfterLoss: when the new source starts past the last frame written (frames lost
// in the gap), the stream goes on at the new source's first key frame, not at a frame that
// needs the lost ones.
func TestSpliceAfterLoss(t *testing.T) {
	f := newSpliceFixture(t)
	for i := 0; i <= 12; i++ {
		f.st.WriteUnit(f.video(i, 0, true))
	}
	f.read()
	sp, err := f.st.Splice(testTracks())
	if err != nil {
		t.Fatal(err)
	}
	const base = 15 * frame
	for i := 15; i <= 25; i++ { // 13 and 14 never come; 15..19 need them
		sp.WriteUnit(f.video(i, base, true))
		if i < 20 {
			select {
			case <-sp.Resumed():
				t.Fatalf("resumed at frame %d, before a key frame", i)
			default:
			}
		}
	}
	got := f.read()
	if len(got) != 6 || frameOf(got[0]) != 20 || !got[0].KeyFrame || got[0].PTS != 20*frame {
		t.Fatalf("after a loss: %d units, first %+v; want frames 20..25 from the key frame", len(got), got[0])
	}
}

// TestSpliceRefused: tracks that differ, or a stream that never carried its source's
// clock, cannot be continued; a closed stream neither.
func TestSpliceRefused(t *testing.T) {
	f := newSpliceFixture(t)
	f.st.WriteUnit(f.video(0, 0, true))
	other := testTracks()
	other[1].Format.(*format.MPEG4Audio).Config = &mpeg4audio.AudioSpecificConfig{
		Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelConfig: 2, ChannelCount: 2,
	}
	otherSPS := testTracks()
	otherSPS[0].Format.(*format.H264).SPS = append([]byte{}, sps720[:len(sps720)-1]...)
	for name, tracks := range map[string][]*Track{
		"audio config": other,
		"sps":          otherSPS,
		"fewer tracks": testTracks()[:1],
		"other codec":  {testTracks()[0], {Format: &format.Opus{PayloadTyp: 97, ChannelCount: 2}}},
	} {
		if _, err := f.st.Splice(tracks); !errors.Is(err, ErrTracksDiffer) {
			t.Errorf("%s: err %v, want ErrTracksDiffer", name, err)
		}
	}
	// Parameter sets known on one side only are no difference (they travel in band).
	noParams := testTracks()
	noParams[0].Format.(*format.H264).SPS, noParams[0].Format.(*format.H264).PPS = nil, nil
	if _, err := f.st.Splice(noParams); err != nil {
		t.Errorf("tracks without out-of-band parameters: %v", err)
	}

	unclocked, err := f.tbl.Publish("live/own", testTracks())
	if err != nil {
		t.Fatal(err)
	}
	unclocked.WriteUnit(f.video(0, 0, false))
	if unclocked.SourceClocked() {
		t.Error("a stream stamped by its own clock reports SourceClocked")
	}
	if _, err := unclocked.Splice(testTracks()); !errors.Is(err, ErrNoSourceClock) {
		t.Errorf("unclocked: err %v, want ErrNoSourceClock", err)
	}
	if !f.st.SourceClocked() {
		t.Error("a stream with the source's clock does not report SourceClocked")
	}
	f.st.Close()
	if _, err := f.st.Splice(testTracks()); !errors.Is(err, ErrStreamClosed) {
		t.Errorf("closed: err %v, want ErrStreamClosed", err)
	}
}

// BenchmarkSpliceWrite: the cost of writing through a Splice (past its seam) against writing
// to the stream itself, one reader draining; "stream" is the baseline of the same run.
func BenchmarkSpliceWrite(b *testing.B) {
	epoch := time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)
	frameBytes := make([]byte, 10000)
	frameBytes[0] = 0x41
	unit := func(i int, base time.Duration) Unit {
		au := [][]byte{frameBytes}
		if i%50 == 0 {
			au = [][]byte{idr}
		}
		pts := time.Duration(i) * frame
		return Unit{Track: 0, PTS: pts - base, DTS: pts - base, NTP: epoch.Add(pts), AU: au}
	}
	for _, spliced := range []bool{false, true} {
		name := "stream"
		if spliced {
			name = "splice"
		}
		b.Run(name, func(b *testing.B) {
			tbl := NewTable(Config{})
			defer tbl.Close()
			st, _ := tbl.Publish("bench", testTracks())
			rd, _ := st.AddReader(ReaderOptions{QueueLen: 4096})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					if _, err := rd.Read(context.Background()); err != nil {
						return
					}
				}
			}()
			st.WriteUnit(unit(0, 0))
			write := st.WriteUnit
			if spliced {
				sp, err := st.Splice(testTracks())
				if err != nil {
					b.Fatal(err)
				}
				sp.WriteUnit(unit(0, 0)) // the seam: the last frame again
				write = sp.WriteUnit
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				write(unit(i, time.Hour))
			}
			b.StopTimer()
			st.Close()
			<-done
		})
	}
}
