package datapath_test

import (
	"testing"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/dptest"
)

// The in-memory datapath stands for the kernel: a restart keeps it, and it
// keeps every value whole.
func TestMemoryConformance(t *testing.T) {
	open := func() func(*testing.T) datapath.Datapath {
		m := datapath.NewMemory()
		return func(*testing.T) datapath.Datapath { return m }
	}
	dptest.Run(t, dptest.Impl{
		NewKernel: func(*testing.T) func(*testing.T) datapath.Datapath { return open() },
		NewAttachKernel: func(*testing.T) (func(*testing.T) datapath.Datapath, [2]dptest.Interface) {
			return open(), [2]dptest.Interface{{Index: 7, Name: "lxc7"}, {Index: 12, Name: "lxc12"}}
		},
	})
}
