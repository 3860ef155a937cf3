package datapath_test

import (
	"testing"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/dptest"
)

// The in-memory datapath stands for the kernel: a restart keeps it.
func TestMemoryConformance(t *testing.T) {
	dptest.Run(t, dptest.Impl{
		NewKernel: func(*testing.T) func(*testing.T) datapath.Datapath {
			m := datapath.NewMemory()
			return func(*testing.T) datapath.Datapath { return m }
		},
	})
}
