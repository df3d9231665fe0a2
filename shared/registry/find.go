package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/peergate/peergate/shared/cluster"
	"github.com/redis/go-redis/v9"
)

// Carrier is one origin that runs a NAME, as FindStream read and verified it.
type Carrier = cluster.Carrier

// FinderOptions tunes a Finder; the zero value gives the defaults.
type FinderOptions struct {
	// MaxClockSkew is as in WatcherOptions: how far an origin's clock may differ from this one.
	MaxClockSkew time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Finder answers point lookups in the registry for an origin (cluster pull-through: which
// origin runs NAME, so this one can relay it). It trusts what a gateway's Watcher trusts:
// records and stream entries signed with the cluster key, fresh by their issue time and TTL.
type Finder struct {
	w *Watcher // verification only; never Run
}

// NewFinder returns a Finder reading the cluster of clusterKey through c.
func NewFinder(c redis.UniversalClient, clusterKey string, o FinderOptions) *Finder {
	return &Finder{w: NewWatcher(c, clusterKey, nil, WatcherOptions{MaxClockSkew: o.MaxClockSkew, Logger: o.Logger, Now: o.Now})}
}

// FindStream returns the live origins that list name running, with their records, sorted by
// origin id. It reads the origin index and, in one pipeline, every listed origin's record and
// its entry for name: O(origins) per call, meant for the start of a relay, not per viewer.
// Entries that fail verification (signature, freshness, validity) are left out; an error is
// returned only when Redis could not be read.
func (f *Finder) FindStream(ctx context.Context, name string) ([]Carrier, error) {
	w := f.w
	minScore := strconv.FormatInt(w.now().Add(-clockSkewGrace).UnixMilli(), 10)
	ids, err := w.c.ZRangeByScore(ctx, w.ks.origins(), &redis.ZRangeBy{Min: minScore, Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("registry index: %w", err)
	}
	type read struct {
		id    string
		at    time.Time
		rec   *redis.StringCmd
		entry *redis.StringCmd
	}
	reads := make([]read, 0, len(ids))
	for _, id := range ids {
		if cluster.ValidID(id) {
			reads = append(reads, read{id: id})
		}
	}
	if len(reads) == 0 {
		return nil, nil
	}
	_, err = w.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range reads {
			reads[i].at = w.now()
			reads[i].rec = p.Get(ctx, w.ks.rec(reads[i].id))
			reads[i].entry = p.HGet(ctx, w.ks.streams(reads[i].id), name)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("registry read: %w", err)
	}
	op := newEntryOpener(w.sg)
	var out []Carrier
	for _, r := range reads {
		blob, err := r.entry.Bytes()
		if err != nil {
			continue // not listed there (or unreadable: the pipeline error above covers that)
		}
		var s cluster.Stream
		if err := op.openStream(r.id, blob, &s); err != nil {
			w.reject(r.id, "stream", err)
			continue
		}
		if err := validStream(s, name); err != nil {
			w.reject(r.id, "stream", err)
			continue
		}
		if s.State != cluster.StreamRunning {
			continue
		}
		recBlob, err := r.rec.Bytes()
		if err != nil {
			continue
		}
		var rec cluster.Origin
		if err := w.sg.open(kindRecord, r.id, recBlob, &rec); err != nil {
			w.reject(r.id, "record", err)
			continue
		}
		if rec.ID != r.id {
			w.reject(r.id, "record", fmt.Errorf("record id %q under another origin's key", rec.ID))
			continue
		}
		if err := rec.Validate(); err != nil {
			w.reject(r.id, "record", err)
			continue
		}
		if _, err := w.fresh(rec, r.at); err != nil {
			w.reject(r.id, "record", err)
			continue
		}
		out = append(out, Carrier{Origin: rec, Stream: s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Origin.ID < out[j].Origin.ID })
	return out, nil
}
