package media

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

// TestFindEndsWhenClaimReleased: a reader waiting for a claimed NAME learns at once that the
// publisher gave up (ErrNotFound), instead of waiting out StartTimeout.
func TestFindEndsWhenClaimReleased(t *testing.T) {
	t.Parallel()
	tbl := NewTable(Config{StartTimeout: 5 * time.Second})
	defer tbl.Close()
	c, err := tbl.Claim("live/gives-up")
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		_, err := tbl.Find(context.Background(), "live/gives-up")
		res <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c.Release()
	select {
	case err := <-res:
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
	case <-time.After(time.Second):
		t.Fatal("reader still waiting 1 s after the claim was released")
	}
	tbl.mu.Lock()
	n := len(tbl.waiters)
	tbl.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d waiters left behind", n)
	}
}

// TestZeroSampleRateNotSupported: AAC with an explicit sample rate of 0 (legal in the
// AudioSpecificConfig) is not carried: its clock rate would be a divisor everywhere.
func TestZeroSampleRateNotSupported(t *testing.T) {
	t.Parallel()
	zero := &format.MPEG4Audio{PayloadTyp: 96, Config: &mpeg4audio.AudioSpecificConfig{
		Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 0, ChannelCount: 2}}
	if Supported(zero) {
		t.Fatal("AAC with sample rate 0 reported as supported")
	}
	tbl := NewTable(Config{})
	defer tbl.Close()
	if _, err := tbl.Publish("live/zero", []*Track{{Format: zero}}); !errors.Is(err, ErrNoTracks) {
		t.Fatalf("publish: %v, want ErrNoTracks", err)
	}
}
