package adminapi

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peergate/peergate/shared/registry"
)

// RegistryView is what the registry metrics read at scrape time; *registry.Watcher and *resolve.Table provide it.
type RegistryView struct {
	Stats func() registry.WatcherStats
	Size  func() (origins, streams, entries int)
	Now   func() time.Time // defaults to time.Now
}

// registryCollector turns Watcher stats and table size into metrics when scraped, so nothing polls.
type registryCollector struct {
	v     RegistryView
	descs map[string]*prometheus.Desc
}

var registryMetrics = []struct{ name, help string }{
	{"peergate_registry_origins", "Origins in the gateway's in-memory index."},
	{"peergate_registry_streams", "Distinct stream names in the index."},
	{"peergate_registry_entries", "(stream, origin) entries in the index."},
	{"peergate_registry_connected", "1 while subscribed to the registry with a loaded snapshot."},
	{"peergate_registry_snapshot_age_seconds", "Seconds since the last full snapshot (absent before the first)."},
	{"peergate_registry_staleness_seconds", "Seconds since the last message or pong from Redis (absent before the first)."},
	{"peergate_registry_events_total", "Registry channel messages handled."},
	{"peergate_registry_signature_failures_total", "Records, stream entries and events dropped for a bad signature."},
	{"peergate_registry_invalid_records_total", "Signed but malformed records dropped."},
	{"peergate_registry_stale_total", "Signed records and heartbeats dropped as replays: past issue time + TTL + max clock skew, or of an older boot epoch."},
	{"peergate_registry_resyncs_total", "Full snapshots read (start, reconnect, anti-entropy)."},
	{"peergate_registry_gap_resyncs_total", "Single-origin re-reads after a version gap or epoch change."},
	{"peergate_registry_expired_total", "Origins dropped because their record's TTL passed."},
	{"peergate_registry_disconnects_total", "Registry sessions lost."},
	{"peergate_registry_degraded", "1 while the gateway serves a registry copy Redis has not confirmed (unreachable, overdue origins, mass expiry)."},
	{"peergate_registry_copy_age_seconds", "Seconds the oldest unconfirmed part of the served copy has gone unconfirmed; 0 when current."},
	{"peergate_registry_overdue_origins", "Origins past their heartbeat deadline still served because Redis did not confirm them gone."},
	{"peergate_registry_kept_unread_total", "Origins kept past their deadline because the read before dropping them failed."},
	{"peergate_registry_mass_expiries_total", "Episodes of most origins vanishing from Redis at once (kept and reported as degraded)."},
}

// RegisterRegistryMetrics defines the peergate_registry_* metrics on reg.
func RegisterRegistryMetrics(reg prometheus.Registerer, v RegistryView) error {
	if v.Now == nil {
		v.Now = time.Now
	}
	c := &registryCollector{v: v, descs: map[string]*prometheus.Desc{}}
	for _, m := range registryMetrics {
		c.descs[m.name] = prometheus.NewDesc(m.name, m.help, nil, nil)
	}
	return reg.Register(c)
}

func (c *registryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *registryCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.v.Stats()
	o, s, e := c.v.Size()
	now := c.v.Now()
	gauge := func(name string, v float64) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v)
	}
	counter := func(name string, v uint64) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, float64(v))
	}
	gauge("peergate_registry_origins", float64(o))
	gauge("peergate_registry_streams", float64(s))
	gauge("peergate_registry_entries", float64(e))
	connected := 0.0
	if st.Connected {
		connected = 1
	}
	gauge("peergate_registry_connected", connected)
	if !st.LastSync.IsZero() {
		gauge("peergate_registry_snapshot_age_seconds", now.Sub(st.LastSync).Seconds())
	}
	if !st.LastContact.IsZero() {
		gauge("peergate_registry_staleness_seconds", now.Sub(st.LastContact).Seconds())
	}
	counter("peergate_registry_events_total", st.Events)
	counter("peergate_registry_signature_failures_total", st.SignatureFailures)
	counter("peergate_registry_invalid_records_total", st.InvalidRecords)
	counter("peergate_registry_stale_total", st.StaleRecords)
	counter("peergate_registry_resyncs_total", st.Resyncs)
	counter("peergate_registry_gap_resyncs_total", st.GapResyncs)
	counter("peergate_registry_expired_total", st.Expired)
	counter("peergate_registry_disconnects_total", st.Disconnects)
	h := st.Health(now)
	degraded := 0.0
	if h.Degraded {
		degraded = 1
	}
	gauge("peergate_registry_degraded", degraded)
	gauge("peergate_registry_copy_age_seconds", h.CopyAge.Seconds())
	gauge("peergate_registry_overdue_origins", float64(st.Overdue))
	counter("peergate_registry_kept_unread_total", st.KeptUnread)
	counter("peergate_registry_mass_expiries_total", st.MassExpiries)
}
