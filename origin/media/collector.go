package media

import "github.com/prometheus/client_golang/prometheus"

// protocols are always exported, so dashboards see zeros instead of missing series.
var protocols = []string{ProtoHLS, ProtoMPEGTS, ProtoRTMP, ProtoRTSP}

// Collector exports a Table's counters to Prometheus at scrape time.
type Collector struct {
	tbl     *Table
	clients *prometheus.Desc
	egress  *prometheus.Desc
	streams *prometheus.Desc
}

// NewCollector returns the Collector of tbl.
func NewCollector(tbl *Table) *Collector {
	return &Collector{
		tbl:     tbl,
		clients: prometheus.NewDesc("peergate_origin_clients", "Viewers currently served, per protocol.", []string{"proto"}, nil),
		egress:  prometheus.NewDesc("peergate_origin_egress_bytes_total", "Media bytes sent to viewers, per protocol.", []string{"proto"}, nil),
		streams: prometheus.NewDesc("peergate_origin_streams", "Live streams (publishing now).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.clients
	ch <- c.egress
	ch <- c.streams
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.tbl.Stats()
	clients, egress := map[string]int64{}, map[string]int64{}
	for _, p := range st.Protocols {
		clients[p.Protocol], egress[p.Protocol] = p.Clients, p.EgressBytes
	}
	for _, p := range protocols {
		ch <- prometheus.MustNewConstMetric(c.clients, prometheus.GaugeValue, float64(clients[p]), p)
		ch <- prometheus.MustNewConstMetric(c.egress, prometheus.CounterValue, float64(egress[p]), p)
	}
	ch <- prometheus.MustNewConstMetric(c.streams, prometheus.GaugeValue, float64(st.Streams))
}
