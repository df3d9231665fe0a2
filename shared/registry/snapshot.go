package registry

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/peergate/peergate/shared/cluster"
	"github.com/redis/go-redis/v9"
)

const (
	// snapshotStreams is about how many stream entries one pipelined snapshot read carries
	// (a read holds at least one origin, at most snapshotBatch): it bounds the memory a read
	// in flight holds and lets verification and loading overlap with the next reads.
	snapshotStreams = 16384
	// snapshotWorkers bounds the snapshot reads (and their verification) in flight; at least
	// two so that one reads from Redis while another verifies.
	snapshotWorkers = 4
)

// loaded is one origin of a snapshot, read and verified by a snapshot worker.
type loaded struct {
	id       string
	err      error // the read failed (not proof of anything)
	ok       bool  // present and trusted; view and deadline are set
	view     OriginView
	deadline time.Time
}

// loadOrigins reads and verifies the origins ids in parallel pipelined batches and calls
// apply, on the calling goroutine, for each one as its batch completes (in no set order).
// Reads are sized by the origins' list lengths (one HLEN round trip first) so that a
// registry of a million streams streams through in bounded pieces rather than one reply.
// It returns ctx's error if ctx ends first; apply may then have seen only some origins.
func (w *Watcher) loadOrigins(ctx context.Context, ids []string, apply func(*loaded)) error {
	valid := ids[:0:0]
	for _, id := range ids {
		if cluster.ValidID(id) {
			valid = append(valid, id)
		}
	}
	if len(valid) == 0 {
		return ctx.Err()
	}
	sizes := make([]*redis.IntCmd, len(valid))
	_, _ = w.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range valid {
			sizes[i] = p.HLen(ctx, w.ks.streams(id))
		}
		return nil
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	var batches [][]string
	var cur []string
	n := 0
	for i, id := range valid {
		size, _ := sizes[i].Result() // a failed HLEN only sizes the batch; the read below reports
		if len(cur) > 0 && (n+int(size) > snapshotStreams || len(cur) >= snapshotBatch) {
			batches, cur, n = append(batches, cur), nil, 0
		}
		cur = append(cur, id)
		n += int(size) + 1
	}
	batches = append(batches, cur)

	workers := min(len(batches), max(2, min(snapshotWorkers, runtime.GOMAXPROCS(0))))
	todo := make(chan []string)
	// Each worker holds at most one verified batch it has not handed over.
	done := make(chan []loaded, workers)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			op := newEntryOpener(w.sg)
			for batch := range todo {
				out := w.readBatch(wctx, op, batch)
				select {
				case done <- out:
				case <-wctx.Done():
					return
				}
			}
		})
	}
	go func() {
		defer close(todo)
		for _, b := range batches {
			select {
			case todo <- b:
			case <-wctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(done) }()
	for out := range done {
		if ctx.Err() != nil {
			continue // drain: workers exit on wctx
		}
		for i := range out {
			apply(&out[i])
			out[i] = loaded{} // let the streams go once the Sink has them
		}
	}
	return ctx.Err()
}

// readBatch is one pipelined read of a batch of origins, verified.
func (w *Watcher) readBatch(ctx context.Context, op *entryOpener, batch []string) []loaded {
	fs := make([]fetched, 0, len(batch))
	_, _ = w.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range batch {
			fs = append(fs, w.queueFetch(ctx, p, id))
		}
		return nil
	})
	out := make([]loaded, len(fs))
	for i, f := range fs {
		out[i].id = f.id
		if ctx.Err() != nil {
			out[i].err = ctx.Err()
			continue
		}
		if err := f.err(); err != nil {
			out[i].err = err
			continue
		}
		out[i].view, out[i].deadline, out[i].ok = w.verifyWith(op, f)
		fs[i] = fetched{} // the raw reply, about as large again as the verified list
	}
	return out
}
