package media

import "time"

// sourceClock is the one wall clock of a stream, shared by every output and every copy of
// the stream in the cluster.
//
// The stream's own timeline (PTS, DTS) starts wherever its publisher started; its wall clock
// says when each unit was captured. A unit written with an NTP (an RTSP publisher's sender
// reports, or the upstream origin's when this stream is a relay copy) carries the source's
// clock: it is kept as it is and re-anchors the stream (anchor = NTP - PTS), so units that
// come without one (another track, a gap between reports) follow the same clock. A stream
// whose source gives no clock is anchored once, at its first unit: anchor = now - PTS. Every
// output (HLS PROGRAM-DATE-TIME, RTSP sender reports) then reads the same NTP for the same
// unit, and a relay that takes the NTP from this origin's sender reports stamps its copy
// with the very same values.
type sourceClock struct {
	anchor time.Time        // NTP of PTS 0; zero until anchored
	await  time.Duration    // AwaitSourceClock: how long units may stay unstamped
	first  time.Time        // arrival of the first unit, for await
	now    func() time.Time // time.Now when nil (tests set it)
}

// stamp returns the NTP of a unit with presentation time pts that arrived now with ntp (zero
// when the source gave none). It returns zero only while the stream awaits its source's
// clock. It reads the time only until the stream is anchored.
func (c *sourceClock) stamp(ntp time.Time, pts time.Duration) time.Time {
	if c.first.IsZero() {
		c.first = c.clock()
	}
	if !ntp.IsZero() {
		c.anchor = ntp.Add(-pts)
		return ntp
	}
	if c.anchor.IsZero() {
		now := c.clock()
		if c.await > 0 && now.Sub(c.first) < c.await {
			return time.Time{}
		}
		c.anchor = now.Add(-pts)
	}
	return c.anchor.Add(pts)
}

func (c *sourceClock) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}
