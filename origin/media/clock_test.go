package media

import (
	"testing"
	"time"
)

// TestSourceClockStamp: without a source clock the stream anchors once (NTP = anchor + PTS for
// every unit, whenever it arrives); a unit with the source's NTP keeps it and re-anchors the
// units that follow without one; AwaitSourceClock leaves units unstamped until the source's
// clock or the bound, whichever first.
func TestSourceClockStamp(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	var c sourceClock
	if got := c.at(t0).stamp(time.Time{}, 2*time.Second); !got.Equal(t0) {
		t.Fatalf("first unit stamped %v, want arrival %v", got, t0)
	}
	// A late unit is stamped from its PTS, not from when it arrived.
	if got := c.at(t0.Add(7*time.Second)).stamp(time.Time{}, 3*time.Second); !got.Equal(t0.Add(time.Second)) {
		t.Fatalf("later unit stamped %v, want anchor+PTS %v", got, t0.Add(time.Second))
	}
	src := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	if got := c.at(t0.Add(8*time.Second)).stamp(src, 4*time.Second); !got.Equal(src) {
		t.Fatalf("source NTP replaced: %v", got)
	}
	if got := c.at(t0.Add(9*time.Second)).stamp(time.Time{}, 5*time.Second); !got.Equal(src.Add(time.Second)) {
		t.Fatalf("after the source clock: %v, want %v", got, src.Add(time.Second))
	}

	a := sourceClock{await: 5 * time.Second}
	if got := a.at(t0).stamp(time.Time{}, 0); !got.IsZero() {
		t.Fatalf("awaiting: stamped %v", got)
	}
	if got := a.at(t0.Add(time.Second)).stamp(src, time.Second); !got.Equal(src) {
		t.Fatalf("awaiting, source clock came: %v", got)
	}
	if got := a.at(t0.Add(2*time.Second)).stamp(time.Time{}, 2*time.Second); !got.Equal(src.Add(time.Second)) {
		t.Fatalf("after the source clock came: %v", got)
	}

	b := sourceClock{await: 5 * time.Second}
	b.at(t0).stamp(time.Time{}, 0)
	if got := b.at(t0.Add(4*time.Second)).stamp(time.Time{}, 4*time.Second); !got.IsZero() {
		t.Fatalf("within the bound: stamped %v", got)
	}
	if got := b.at(t0.Add(5*time.Second)).stamp(time.Time{}, 5*time.Second); !got.Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("past the bound: %v, want an own anchor %v", got, t0.Add(5*time.Second))
	}
}

// TestWriteUnitStampsOneClock: every reader sees the same NTP for a unit, derived from one
// anchor, so every output of the stream shows the same wall clock.
func TestWriteUnitStampsOneClock(t *testing.T) {
	tbl := NewTable(Config{})
	defer tbl.Close()
	st, err := tbl.Publish("s", testTracks())
	if err != nil {
		t.Fatal(err)
	}
	ctx := bounded(t)
	r1, _ := st.AddReader(ReaderOptions{})
	r2, _ := st.AddReader(ReaderOptions{})
	before := time.Now()
	st.WriteUnit(Unit{Track: 0, PTS: 0, AU: [][]byte{idr}})
	st.WriteUnit(Unit{Track: 1, PTS: 40 * time.Millisecond, Frame: []byte{1}})
	st.WriteUnit(Unit{Track: 0, PTS: 80 * time.Millisecond, AU: [][]byte{slice}})
	var first time.Time
	for i, want := range []time.Duration{0, 40 * time.Millisecond, 80 * time.Millisecond} {
		a, err1 := r1.Read(ctx)
		b, err2 := r2.Read(ctx)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if a.NTP.IsZero() || !a.NTP.Equal(b.NTP) {
			t.Fatalf("unit %d: readers saw %v and %v", i, a.NTP, b.NTP)
		}
		if i == 0 {
			first = a.NTP
			if first.Before(before) || first.After(time.Now()) {
				t.Fatalf("anchor %v not taken at the first unit", first)
			}
		}
		if got := a.NTP.Sub(first); got != want {
			t.Fatalf("unit %d: NTP %v after the first, want %v (PTS)", i, got, want)
		}
	}
}

// at makes the clock read t from now on.
func (c *sourceClock) at(t time.Time) *sourceClock {
	c.now = func() time.Time { return t }
	return c
}
