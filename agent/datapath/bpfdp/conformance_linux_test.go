package bpfdp_test

import (
	"net/netip"
	"testing"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/bpfdp"
	"github.com/clustermesh/clustermesh/agent/datapath/dptest"
	"github.com/clustermesh/clustermesh/bpf"
)

// kept is what the eBPF datapath keeps of each table's values; attachments
// are kept whole (the interface's name comes back from netlink).
var kept = dptest.Kept{IPCache: bpfdp.KeptIPCache, Services: bpfdp.KeptService, Policies: bpfdp.KeptPolicy}

// The eBPF datapath passes the tests of the in-memory one, restarts
// included (close, then reopen from the pins), with the values as the
// kernel keeps them.
func TestConformance(t *testing.T) {
	requireRoot(t)
	dptest.Run(t, dptest.Impl{
		NewKernel: func(t *testing.T) func(*testing.T) datapath.Datapath {
			return opener(newKernel(t))
		},
		VolatilePeers: true,
		Kept:          kept,
		NewAttachKernel: func(t *testing.T) (func(*testing.T) datapath.Datapath, [2]dptest.Interface) {
			pinDir, topo := newKernel(t), newTopology(t, 2)
			var ifs [2]dptest.Interface
			for i, p := range topo.pods {
				ifs[i] = dptest.Interface{Index: p.ifindex, Name: p.ifname}
			}
			return func(t *testing.T) datapath.Datapath { return openWith(t, bpf.Options{PinDir: pinDir}, topo.node) }, ifs
		},
	})
}

// The reconciler adopts what a previous agent pinned, rewrites what the
// kernel keeps only in part (the entries' cluster names here), prunes only
// once its sources are initialized, and converges: the test the reconciler
// runs against the in-memory table, here against the kernel.
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
		Kept:  bpfdp.KeptIPCache,
	})
}

// Policies: V1's rules are not one per kernel entry (a range of several
// blocks, a port for every protocol), so they are rewritten once.
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
		V2:   datapath.EndpointPolicy{Identity: 1000, EnforceIngress: true, EnforceEgress: true, Rules: dptest.ManyRules(150)},
		Kept: bpfdp.KeptPolicy,
	})
}

// Services: the names and backend clusters are not kept.
func TestReconcileServices(t *testing.T) {
	pinDir := newKernel(t)
	d := open(t, pinDir)
	fe := func(port uint16) datapath.ServiceKey {
		return datapath.ServiceKey{Addr: netip.MustParseAddr("10.96.0.10"), Port: port, Protocol: "TCP"}
	}
	dptest.Reconcile(t, dptest.ReconcileCase[datapath.ServiceKey, datapath.Service]{
		Table: d.Services(),
		Restart: func(t *testing.T) datapath.Table[datapath.ServiceKey, datapath.Service] {
			return dptest.Restart(t, d, opener(pinDir)).Services()
		},
		Live:  fe(80),
		Stale: fe(81),
		New:   fe(82),
		V1:    datapath.Service{Namespace: "ns", Name: "web", Backends: dptest.ManyBackends(3, "cluster-2")},
		V2:    datapath.Service{Namespace: "ns", Name: "web", Backends: dptest.ManyBackends(5, "")},
		Kept:  bpfdp.KeptService,
	})
}
