package resolve

// Place chooses the origin that takes a publisher of req.Name (an encoder pointed at the
// gateway, relayed there). An origin that already runs the name wins, so a reconnecting
// encoder lands where its viewers are; else the least utilized origin that is up, not full
// and offers req.Proto, ties broken by rendezvous on the name so every gateway agrees.
// Draining and full origins never take a new publisher, nor does an origin relaying the name. Outcome is NotFound only when the
// table holds no origin at all, Unavailable when none is eligible.
func (t *Table) Place(req Request) Result {
	nameKey, _ := keys(req.Name, "")
	e := t.lookup(nameKey, req.Name)
	for i, n := 0, e.len(); i < n; i++ {
		r := e.at(i)
		if !r.running || r.relay {
			continue // a relay copy is never where a publisher goes
		}
		s := r.o.snap.Load()
		// A running publisher's origin keeps the name even when full of viewers: a second
		// origin would only get a duplicate claim.
		if !s.up {
			continue
		}
		if sch := s.urlFor(req.Proto, req.Secure); sch >= 0 {
			return s.result(r.o.id, sch)
		}
	}
	var best pick
	var bestUtil float64
	t.omu.RLock()
	total := len(t.byID)
	for _, o := range t.byID {
		if i := e.indexOf(o); i >= 0 && e.at(i).relay {
			continue // it already carries the name as a relay: a publisher there would collide
		}
		s := o.snap.Load()
		sch, w := s.check(req.Proto, req.Secure)
		if w != eligible {
			continue
		}
		p := pick{o: o, s: s, scheme: sch, score: score(nameKey, o.idHash)}
		if best.o == nil || s.util() < bestUtil || (s.util() == bestUtil && p.beats(&best)) {
			best, bestUtil = p, s.util()
		}
	}
	t.omu.RUnlock()
	switch {
	case best.o != nil:
		return best.s.result(best.o.id, best.scheme)
	case total == 0:
		return Result{Outcome: NotFound}
	}
	return Result{Outcome: Unavailable}
}

// urlFor is check without the capacity test: the scheme index for p, or -1.
func (s *snapshot) urlFor(p Proto, secure bool) int {
	if int(p) >= len(protoNames) {
		return -1
	}
	want, other := 2*int(p), 2*int(p)+1
	if secure {
		want, other = other, want
	}
	if s.urls[want] != "" {
		return want
	}
	if s.urls[other] != "" {
		return other
	}
	return -1
}
