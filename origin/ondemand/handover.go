package ondemand

import (
	"errors"
	"log/slog"
	"time"

	"github.com/peergate/peergate/origin/media"
)

// Relay handover: when a relay copy's upstream drops (killed, drained away, unreachable),
// the relay keeps its stream, with every viewer attached to it over every protocol, and
// pulls again at once from another copy (the retry avoids the upstream that failed: see
// chooseUpstream). Every copy carries the source's clock, so the new pull continues the same
// stream (media.Stream.Splice): the same timeline, the viewers see a gap and go on, the HLS
// muxer keeps running. The stream is held for at most RelayGrace: a new upstream that does
// not continue it by then (none runs the stream, none answers, or only one that carries no
// source clock), or one whose tracks differ, ends it as before, and the next pull publishes
// a new stream.
//
// Only streams that carried the source's clock (relay pulls over RTSP, from sender reports)
// are held; a pull over RTMP or HLS has no clock to continue on.

// DefaultRelayGrace is Manager.RelayGrace's default: time to find the next upstream, connect
// to it and receive its first sender report (sent within a second of PLAY), with room for a
// loaded machine; short enough that players keep waiting rather than give up.
const DefaultRelayGrace = 5 * time.Second

// errStreamGone ends a pull whose stream ended under it: a held relay stream whose grace ran
// out before the pull continued it.
var errStreamGone = errors.New("ondemand: the stream ended under the pull (a held relay stream not continued within grace)")

// held is a relay stream waiting for its next upstream.
type held struct {
	st      *media.Stream
	since   time.Time   // when the upstream dropped
	timer   *time.Timer // ends the stream after RelayGrace
	sp      *media.Splice
	retried bool // the immediate retry was made
}

// hold keeps st, whose pull just failed with err, for the next pull of p to continue.
func (m *Manager) hold(p *pull, st *media.Stream, err error, log *slog.Logger) {
	if m.RelayGrace < 0 || !st.SourceClocked() {
		st.Close()
		return
	}
	h := &held{st: st, since: time.Now()}
	m.mu.Lock()
	p.held = h
	h.timer = time.AfterFunc(m.RelayGrace, func() { m.expire(p, h, log) })
	m.mu.Unlock()
	log.Info("relay upstream lost, stream held", "err", err, "grace", m.RelayGrace, "viewers", st.Viewers())
}

// expire ends h unless a pull has continued it.
func (m *Manager) expire(p *pull, h *held, log *slog.Logger) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h.sp != nil && closed(h.sp.Resumed()) {
		return
	}
	if p.held == h {
		p.held = nil
	}
	select {
	case <-h.st.Done():
		return
	default:
	}
	log.Warn("relay stream ended", "reason", "no upstream continued it within grace", "grace", m.RelayGrace)
	h.st.Close() // a pull continuing it stops (watchIdle) and the next one publishes anew
}

// continueHold continues p's held stream with a new pull's tracks; nil when there is none
// or the tracks differ (the held stream then ends).
func (m *Manager) continueHold(p *pull, tracks []*media.Track, log *slog.Logger) (*held, *media.Splice) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := p.held
	if h == nil {
		return nil, nil
	}
	p.held = nil
	sp, err := h.st.Splice(tracks)
	if err != nil {
		h.timer.Stop()
		if !errors.Is(err, media.ErrStreamClosed) {
			log.Warn("relay stream ended", "reason", err.Error())
			h.st.Close()
		}
		return nil, nil
	}
	h.sp = sp
	log.Info("on-demand pull running", "codecs", h.st.Meta().Codecs, "continues", true)
	return h, sp
}

// afterContinue settles h after the pull that continued it (through sp) ended with err.
func (m *Manager) afterContinue(p *pull, h *held, sp *media.Splice, keep bool, err error, log *slog.Logger) {
	if closed(sp.Resumed()) || !keep {
		h.timer.Stop()
		if keep {
			m.hold(p, h.st, err, log) // it ran: a new loss, a new grace
		} else {
			h.st.Close()
		}
		return
	}
	// It never resumed: the stream keeps waiting, within the grace of the first loss.
	m.mu.Lock()
	defer m.mu.Unlock()
	h.sp = nil
	if !closed(h.st.Done()) {
		p.held = h
	}
}

// endHold ends p's held stream, if any.
func (m *Manager) endHold(p *pull, reason string) {
	m.mu.Lock()
	h := p.held
	p.held = nil
	m.mu.Unlock()
	if h == nil {
		return
	}
	h.timer.Stop()
	if !closed(h.st.Done()) {
		m.Logger.Info("relay stream ended", "stream", p.src.Name, "reason", reason)
		h.st.Close()
	}
}

// handingOver reports, once per hold, whether p holds a stream: its first retry comes at once.
func (m *Manager) handingOver(p *pull) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h := p.held; h != nil && !h.retried {
		h.retried = true
		return true
	}
	return false
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
