// Package versionmetric exports a binary's build as the Prometheus gauge
// clustermesh_build_info (kept apart from package version, so that the
// binaries without metrics do not link the Prometheus client).
package versionmetric

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clustermesh/clustermesh/internal/version"
)

// Collector is clustermesh_build_info: 1, with the build's version,
// commit, Go version and BPF objects as labels, as Prometheus'
// <name>_build_info convention has it.
func Collector() prometheus.Collector {
	i := version.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "clustermesh_build_info",
		Help: "The build of this binary: version, commit, Go version and the hash of its BPF objects (value 1).",
		ConstLabels: prometheus.Labels{"version": i.Version, "commit": i.Commit, "go_version": i.GoVersion,
			"bpf_objects": i.BPFObjects},
	})
	g.Set(1)
	return g
}
