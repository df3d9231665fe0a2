package media_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"

	"github.com/peergate/peergate/internal/mediatest"
	"github.com/peergate/peergate/origin/media"
)

// opusOnly is a track list that goes live at once (no video: no key frame to wait for).
func opusOnly() []*media.Track {
	return []*media.Track{{Format: &format.Opus{PayloadTyp: 96, ChannelCount: 2}}}
}

// find runs Table.Find in the background and returns where its result arrives.
func find(tbl *media.Table, name string) <-chan error {
	res := make(chan error, 1)
	go func() {
		_, err := tbl.Find(context.Background(), name)
		res <- err
	}()
	return res
}

// result waits (5 s at most) for the error a background Find returned.
func result(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("reader still waiting after 5 s")
		return nil
	}
}

// TestFindWaitsForClaimedName: a reader of a NAME a publisher claimed but has not published
// yet waits for the tracks and gets the stream.
func TestFindWaitsForClaimedName(t *testing.T) {
	t.Parallel()
	tbl := media.NewTable(media.Config{StartTimeout: 30 * time.Second})
	defer tbl.Close()
	c, err := tbl.Claim("live/slow")
	if err != nil {
		t.Fatal(err)
	}
	res := find(tbl, "live/slow")
	mediatest.EventuallyT(t, 5*time.Second, func() bool { return tbl.Waiting("live/slow") }, "reader not waiting for the claimed name")
	st, err := c.Publish(opusOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := result(t, res); err != nil {
		t.Fatalf("reader of a claimed name: %v", err)
	}
}

// TestFindEndsWhenClaimReleased: a reader waiting for a claimed NAME learns at once that the
// publisher gave up (ErrNotFound), instead of waiting out StartTimeout.
func TestFindEndsWhenClaimReleased(t *testing.T) {
	t.Parallel()
	tbl := media.NewTable(media.Config{StartTimeout: 30 * time.Second})
	defer tbl.Close()
	c, err := tbl.Claim("live/gives-up")
	if err != nil {
		t.Fatal(err)
	}
	res := find(tbl, "live/gives-up")
	mediatest.EventuallyT(t, 5*time.Second, func() bool { return tbl.Waiting("live/gives-up") }, "reader not waiting for the claimed name")
	c.Release()
	// 5 s against a StartTimeout of 30 s: an answer in time came from the release.
	if err := result(t, res); !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	if tbl.Waiting("live/gives-up") {
		t.Fatal("waiter left behind")
	}
}

type starter struct{ asks chan string }

func (s *starter) Demand(_ *media.Table, name string) bool {
	if name != "ondemand/a" {
		return false
	}
	s.asks <- name
	return true
}

// TestOnDemandWaitsForPublisher: an unknown NAME fails at once; a reader of a NAME the
// Starter accepts waits for its publisher, or fails after StartTimeout.
func TestOnDemandWaitsForPublisher(t *testing.T) {
	t.Parallel()
	sr := &starter{asks: make(chan string, 10)}
	tbl := media.NewTable(media.Config{Starter: sr, StartTimeout: 30 * time.Second})
	defer tbl.Close()
	if _, err := tbl.Find(context.Background(), "nope"); !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	res := make(chan error, 1)
	go func() {
		_, rd, err := tbl.Subscribe(context.Background(), "ondemand/a", media.ReaderOptions{})
		if err == nil {
			rd.Close()
		}
		res <- err
	}()
	select {
	case <-sr.asks:
	case <-time.After(5 * time.Second):
		t.Fatal("starter not asked within 5 s")
	}
	mediatest.EventuallyT(t, 5*time.Second, func() bool { return tbl.Waiting("ondemand/a") }, "reader not waiting for the on-demand name")
	st, err := tbl.Publish("ondemand/a", opusOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := result(t, res); err != nil {
		t.Fatalf("waiting reader: %v", err)
	}

	// Nobody publishes: the reader gives up after StartTimeout (50 ms here).
	tbl2 := media.NewTable(media.Config{Starter: sr, StartTimeout: 50 * time.Millisecond})
	defer tbl2.Close()
	if _, err := tbl2.Find(context.Background(), "ondemand/a"); !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("timed-out start: %v", err)
	}
}
