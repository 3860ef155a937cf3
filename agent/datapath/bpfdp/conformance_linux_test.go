package bpfdp_test

import (
	"net/netip"
	"testing"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/dptest"
)

// The eBPF datapath passes the tests of the in-memory one, restarts
// included (close, then reopen from the pins).
func TestConformance(t *testing.T) {
	requireRoot(t)
	dptest.Run(t, dptest.Impl{
		NewKernel: func(t *testing.T) func(*testing.T) datapath.Datapath {
			return opener(newKernel(t))
		},
		VolatilePeers: true,
	})
}

// The reconciler adopts what a previous agent pinned, prunes only once its
// sources are initialized, and converges: the test the reconciler runs
// against the in-memory table, here against the kernel.
func TestReconcileIPCache(t *testing.T) {
	for _, incremental := range []bool{false, true} {
		t.Run(map[bool]string{false: "full", true: "incremental"}[incremental], func(t *testing.T) {
			testReconcileIPCache(t, incremental)
		})
	}
}

func testReconcileIPCache(t *testing.T, incremental bool) {
	pinDir := newKernel(t)
	d := open(t, pinDir)
	dptest.Reconcile(t, dptest.ReconcileCase[netip.Prefix, datapath.IPCacheEntry]{
		Incremental: incremental,
		Table:       d.IPCache(),
		Restart: func(t *testing.T) datapath.Table[netip.Prefix, datapath.IPCacheEntry] {
			return dptest.Restart(t, d, opener(pinDir)).IPCache()
		},
		Live:  netip.MustParsePrefix("10.1.0.0/24"),
		Stale: netip.MustParsePrefix("10.1.1.0/24"),
		New:   netip.MustParsePrefix("10.1.2.5/32"),
		V1:    datapath.IPCacheEntry{Identity: 1000, HostIP: netip.MustParseAddr("192.168.0.2"), Cluster: "cluster-1"},
		V2:    datapath.IPCacheEntry{Identity: 2000, HostIP: netip.MustParseAddr("192.168.0.3"), Cluster: "cluster-2"},
	})
}

func TestReconcilePolicies(t *testing.T) {
	pinDir := newKernel(t)
	d := open(t, pinDir)
	dptest.Reconcile(t, dptest.ReconcileCase[uint16, datapath.EndpointPolicy]{
		Table: d.Policies(),
		Restart: func(t *testing.T) datapath.Table[uint16, datapath.EndpointPolicy] {
			return dptest.Restart(t, d, opener(pinDir)).Policies()
		},
		Live:  1,
		Stale: 2,
		New:   3,
		V1: datapath.EndpointPolicy{Identity: 1000, EnforceIngress: true, Rules: []datapath.PolicyRule{
			{Identity: 2000, Ingress: true, Proto: 6, Port: 8080, EndPort: 8090},
			{Identity: 0, Ingress: true, Port: 53},
		}},
		V2: datapath.EndpointPolicy{Identity: 1000, EnforceIngress: true, EnforceEgress: true, Rules: dptest.ManyRules(150)},
	})
}
