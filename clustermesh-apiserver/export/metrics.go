package export

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the export.
type Metrics struct {
	// Invalid counts objects reported as invalid, by kind and reason.
	Invalid *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clustermesh_apiserver_invalid_objects_total",
			Help: "Kubernetes objects found invalid for export, by kind and reason.",
		}, []string{"kind", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.Invalid)
	}
	return m
}
