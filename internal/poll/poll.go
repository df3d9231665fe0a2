// Package poll is the tests' one way to wait for a condition: polled with a generous bound
// (seconds), never waited for with a bare sleep.
package poll

import (
	"fmt"
	"testing"
	"time"
)

// Interval is how often Until polls.
const Interval = 20 * time.Millisecond

// Until polls cond every Interval until it holds or d passes, and reports whether it held.
func Until(d time.Duration, cond func() bool) bool { return Every(d, Interval, cond) }

// Every is Until with a poll interval of every, for callers that measure how long cond took
// and want a finer grain.
func Every(d, every time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(every)
	}
}

// T is Until that fails the test with the message (format and args, as for t.Fatalf) when
// cond does not hold within d.
func T(t testing.TB, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	if !Until(d, cond) {
		t.Fatalf("%s (not within %v)", fmt.Sprintf(format, args...), d)
	}
}
