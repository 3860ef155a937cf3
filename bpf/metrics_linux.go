package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// MetricKey identifies a verdict counter.
type MetricKey struct {
	Ingress bool
	Reason  Reason
}

// Counter is a number of packets and their bytes.
type Counter struct {
	Packets, Bytes uint64
}

// metricsValue mirrors struct metrics_value.
type metricsValue struct {
	Packets, Bytes uint64
}

// Metrics returns the non-zero verdict counters, summed over CPUs.
func (d *Datapath) Metrics() (map[MetricKey]Counter, error) { return readMetrics(d.tc.Metrics) }

// readMetrics returns the non-zero counters of the metrics map m.
func readMetrics(m *ebpf.Map) (map[MetricKey]Counter, error) {
	out := map[MetricKey]Counter{}
	var (
		k uint32
		v []metricsValue
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		var c Counter
		for _, cpu := range v {
			c.Packets += cpu.Packets
			c.Bytes += cpu.Bytes
		}
		if c.Packets == 0 {
			continue
		}
		out[MetricKey{Ingress: k/reasonMax == dirIngress, Reason: Reason(k % reasonMax)}] = c
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return out, nil
}
