package flows

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clustermesh/clustermesh/agent/flowapi"
)

// metrics of a Recorder. The counters of flows are counted on Run's
// goroutine, through a cache of the counters of each label set that only
// that goroutine touches; the ring's and the losses' are read at scrape
// time.
type metrics struct {
	flows, drops *prometheus.CounterVec
	cache        map[flowKey]prometheus.Counter // Run's only
	dropCache    map[string]prometheus.Counter  // Run's only

	r                    *Recorder
	capacity, held, lost *prometheus.Desc
	seen                 *prometheus.Desc
}

type flowKey struct{ verdict, reason, direction, peer string }

// noPeerCluster is the peer_cluster of a flow whose peer has none (the
// world, an unknown address).
const noPeerCluster = "none"

func newMetrics(r *Recorder) *metrics {
	return &metrics{
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clustermesh_agent_flows_total",
			Help: "Flows recorded (forwarded ones as sampled by --flows-allowed-sample), by verdict, reason, direction and the peer's cluster.",
		}, []string{"verdict", "reason", "direction", "peer_cluster"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clustermesh_agent_drops_total",
			Help: "Packets the datapath dropped and reported, by reason.",
		}, []string{"reason"}),
		cache: map[flowKey]prometheus.Counter{}, dropCache: map[string]prometheus.Counter{},
		r:        r,
		capacity: prometheus.NewDesc("clustermesh_agent_flow_ring_capacity", "Flows the ring of recent flows can hold (--flows-capacity).", nil, nil),
		held:     prometheus.NewDesc("clustermesh_agent_flow_ring_flows", "Flows the ring of recent flows holds.", nil, nil),
		seen:     prometheus.NewDesc("clustermesh_agent_flow_ring_added_total", "Flows added to the ring of recent flows.", nil, nil),
		lost: prometheus.NewDesc("clustermesh_agent_flow_events_lost_total",
			"Datapath events that did not become a visible flow, by where they were lost: datapath (its ring buffer was full), undecodable, overwritten (pushed out of the ring by newer flows).", []string{"source"}, nil),
	}
}

// count counts f.
func (m *metrics) count(f *flowapi.Flow) {
	peer := f.Src.Cluster
	if f.Direction == flowapi.DirectionEgress {
		peer = f.Dst.Cluster
	}
	if peer == "" {
		peer = noPeerCluster
	}
	k := flowKey{f.Verdict, f.Reason, f.Direction, peer}
	c, ok := m.cache[k]
	if !ok {
		c = m.flows.WithLabelValues(k.verdict, k.reason, k.direction, k.peer)
		m.cache[k] = c
	}
	c.Inc()
	if f.Verdict != flowapi.VerdictDropped {
		return
	}
	d, ok := m.dropCache[f.Reason]
	if !ok {
		d = m.drops.WithLabelValues(f.Reason)
		m.dropCache[f.Reason] = d
	}
	d.Inc()
}

// Collectors returns the recorder's metrics, to register with the agent's
// registry.
func (r *Recorder) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.metrics.flows, r.metrics.drops, r.metrics}
}

// Describe implements prometheus.Collector for the ring and the losses.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.capacity, m.held, m.seen, m.lost} {
		ch <- d
	}
}

// Collect implements prometheus.Collector for the ring and the losses.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.r.Status()
	ch <- prometheus.MustNewConstMetric(m.capacity, prometheus.GaugeValue, float64(st.Capacity))
	ch <- prometheus.MustNewConstMetric(m.held, prometheus.GaugeValue, float64(st.Held))
	ch <- prometheus.MustNewConstMetric(m.seen, prometheus.CounterValue, float64(st.Seen))
	ch <- prometheus.MustNewConstMetric(m.lost, prometheus.CounterValue, float64(st.Lost.Datapath), "datapath")
	ch <- prometheus.MustNewConstMetric(m.lost, prometheus.CounterValue, float64(st.Lost.Undecodable), "undecodable")
	ch <- prometheus.MustNewConstMetric(m.lost, prometheus.CounterValue, float64(st.Lost.Overwritten), "overwritten")
}
