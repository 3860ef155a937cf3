package bpf

import (
	"fmt"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// ReadPinnedMetrics returns the non-zero verdict counters of the datapath
// pinned under pinDir (an agent's --bpf-pin-dir), summed over CPUs, read
// by another process (tests, benchmarks, tools) without loading programs.
func ReadPinnedMetrics(pinDir string) (map[MetricKey]Counter, error) {
	path := filepath.Join(pinDir, tcMapMetrics)
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("open the pinned metrics %s (is an agent running with --bpf-pin-dir=%s?): %w", path, pinDir, err)
	}
	defer m.Close()
	return readMetrics(m)
}
