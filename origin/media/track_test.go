package media

import (
	"errors"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

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
