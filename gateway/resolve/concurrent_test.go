package resolve

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/peergate/peergate/shared/cluster"
)

// TestConcurrentReadersAndWriter resolves from several goroutines while one writer churns
// through every Sink method. Under -race it checks the locking; it also checks that a name
// that stays listed on an up origin is never missing, even across ReplaceAll.
func TestConcurrentReadersAndWriter(t *testing.T) {
	t.Parallel()
	const (
		writes  = 2000
		readers = 4
	)
	names := make([]string, 200)
	for i := range names {
		names[i] = fmt.Sprintf("live/cam%d", i)
	}
	urls := map[string]string{}
	for i := range 6 {
		id := fmt.Sprint("o", i)
		urls[id] = org(id).Public["http"]
	}
	stable := org("stable")
	urls["stable"] = stable.Public["http"]

	tb := New(Options{Hysteresis: DefaultHysteresis})
	tb.ReplaceAll([]cluster.OriginView{view(stable, running("keep"))})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	done := make(chan struct{})
	var ready sync.WaitGroup // the writer starts once every reader is resolving
	ready.Add(readers)
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if i == 1 {
					ready.Done()
				}
				select {
				case <-done:
					errs <- nil
					return
				case <-ctx.Done():
					errs <- ctx.Err()
					return
				default:
				}
				req := Request{Name: names[i%len(names)], Client: fmt.Sprint(r, i%7)}
				res := tb.Resolve(req)
				if res.Outcome == OK && urls[res.OriginID] != res.BaseURL {
					errs <- fmt.Errorf("%+v: base URL not the origin's", res)
					return
				}
				if res := tb.Resolve(Request{Name: "keep"}); res.OriginID != "stable" {
					errs <- fmt.Errorf("keep: %+v", res)
					return
				}
				if i%50 == 0 {
					tb.Explain(req)
					tb.Origins()
					tb.Size()
				}
				if i%500 == 0 {
					tb.Streams()
				}
			}
		}()
	}

	ready.Wait()
	for w := range writes {
		id := fmt.Sprint("o", w%6)
		start := (w * 7) % len(names)
		some := names[start:min(start+50, len(names))]
		switch w % 6 {
		case 0:
			tb.PutOrigin(org(id, util(float64(w%10)/10)))
		case 1:
			tb.PutStreams(id, running(some...))
		case 2:
			tb.ApplyStreams(id, []cluster.StreamChange{
				{Stream: cluster.Stream{Name: names[w%len(names)], State: cluster.StreamOnDemand}},
				{Stream: cluster.Stream{Name: names[(w+1)%len(names)]}, Removed: true},
			})
		case 3:
			tb.PutOrigin(org(id, draining))
		case 4:
			if w%12 == 4 {
				tb.DropOrigin(id)
			}
		case 5:
			if w%60 == 5 {
				tb.ReplaceAll([]cluster.OriginView{
					view(stable, running("keep")),
					view(org(id), running(names[:100]...)),
					view(org("o0"), ondemand(names[50:]...)),
				})
			}
		}
	}
	close(done)
	wg.Wait()
	for range readers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	checkInvariants(t, tb)
	_, s, e := tb.Size()
	st := tb.Streams()
	entries := 0
	for _, x := range st {
		entries += len(x.Origins)
	}
	if s != len(st) || e != entries {
		t.Errorf("Size says %d streams %d entries; Streams() has %d and %d", s, e, len(st), entries)
	}
	total := 0
	for _, o := range tb.Origins() {
		total += o.Streams
	}
	if total != e {
		t.Errorf("origins count %d entries, table %d", total, e)
	}
}
