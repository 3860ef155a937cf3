package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/remote"
)

// statusCollector exports the peers' and reconcilers' status as metrics,
// read at scrape time (no second copy of the state to keep in sync).
type statusCollector struct {
	peers       func() []remote.Status
	reconcilers func() []reconciler.Status

	ready, connected, failures, lastFailure, entries *prometheus.Desc
	desired, applied, failing, pressure              *prometheus.Desc
}

func newStatusCollector(peers func() []remote.Status, recs func() []reconciler.Status) *statusCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("clustermesh_agent_"+name, help, labels, nil)
	}
	return &statusCollector{
		peers: peers, reconcilers: recs,
		ready:       d("peer_ready", "1 when every prefix of the peer cluster is synced.", "cluster"),
		connected:   d("peer_connected", "1 when the agent is connected to the peer cluster's etcd.", "cluster"),
		failures:    d("peer_failures_total", "Connection or watch failures with the peer cluster.", "cluster"),
		lastFailure: d("peer_last_failure_timestamp_seconds", "Time of the last failure with the peer cluster (0: none).", "cluster"),
		entries:     d("peer_entries", "Entries accepted from the peer cluster, by kind.", "cluster", "kind"),
		desired:     d("reconciler_desired", "Objects the datapath table should hold.", "table"),
		applied:     d("reconciler_applied", "Objects the datapath table holds.", "table"),
		failing:     d("reconciler_failing", "Objects whose last datapath operation failed (retried with backoff).", "table"),
		pressure:    d("datapath_map_pressure", "Fill ratio of a bounded datapath table: objects held / capacity (1 is full: further objects fail).", "table"),
	}
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ready, c.connected, c.failures, c.lastFailure, c.entries, c.desired, c.applied, c.failing, c.pressure} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, p := range c.peers() {
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, b(p.Ready), p.Name)
		ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, b(p.Connected), p.Name)
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(p.Failures), p.Name)
		var last float64
		if !p.LastFailureTime.IsZero() {
			last = float64(p.LastFailureTime.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(c.lastFailure, prometheus.GaugeValue, last, p.Name)
		for _, k := range remote.Kinds {
			ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(p.Entries[k]), p.Name, string(k))
		}
	}
	for _, r := range c.reconcilers() {
		ch <- prometheus.MustNewConstMetric(c.desired, prometheus.GaugeValue, float64(r.Desired), r.Name)
		ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(r.Applied), r.Name)
		ch <- prometheus.MustNewConstMetric(c.failing, prometheus.GaugeValue, float64(r.Failing), r.Name)
		if r.Capacity > 0 {
			ch <- prometheus.MustNewConstMetric(c.pressure, prometheus.GaugeValue, float64(r.Applied)/float64(r.Capacity), r.Name)
		}
	}
}
