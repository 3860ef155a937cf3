package server_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/agent/server"
	"github.com/clustermesh/clustermesh/internal/testing/k8stest"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

// TestAgent runs the agent against one real kube-apiserver (shared by the
// subtests, each in its own namespace) and peers simulated by real etcd
// servers written through the kvstore writer.
func TestAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs the kube-apiserver test bed")
	}
	kube := k8stest.Start(t)
	for name, f := range map[string]func(*testing.T, *k8stest.Cluster){
		"peer state validated, served and drained":    testPeerState,
		"nothing pruned before every source is ready": testNoPruneBeforeReady,
		"global service merged from two peers":        testGlobalMerge,
		"affinity":                                    testAffinity,
		"local pods, identities and nodes":            testLocalCluster,
		"policies into the datapath":                  testPolicies,
	} {
		t.Run(name, func(t *testing.T) { f(t, kube) })
	}
}

// A peer configured in the mesh directory is connected, validated, merged
// into the state, reconciled into the datapath and shown by the local API;
// removing its file drains it everywhere.
func testPeerState(t *testing.T, kube *k8stest.Cluster) {
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), peerNode("cluster2", 2, 1))
	p.Put(t, paths.Identity(131073), "k8s:app=rebel-base;k8s:io.cilium.k8s.policy.cluster=cluster2;k8s:io.kubernetes.pod.namespace=default;")
	p.Put(t, paths.Identity(65537), "k8s:app=spoof;k8s:io.cilium.k8s.policy.cluster=cluster1;")
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.5", `{"IP":"10.2.1.5","Mask":null,"HostIP":"192.168.2.1","ID":131073,"Key":0,"Metadata":""}`)
	p.Synced()
	b := startAgent(t, kube, "node-peerstate", nil)
	b.connect(t, p)
	b.waitAPI(t)
	eventually(t, "peer ready in /v1/status", func() bool {
		var st localapi.StatusResponse
		b.get(t, "/v1/status", &st)
		return len(st.Peers) == 1 && st.Peers[0].Ready
	})
	var ipc []localapi.PrefixEntry
	b.get(t, "/v1/ipcache", &ipc)
	want := localapi.PrefixEntry{Prefix: "10.2.1.5/32", Identity: 131073, HostIP: "192.168.2.1", Cluster: "cluster2"}
	if !containsEntry(ipc, want) {
		t.Fatalf("/v1/ipcache = %+v, want it to hold %+v", ipc, want)
	}
	var ids []localapi.IdentityEntry
	b.get(t, "/v1/identities", &ids)
	for _, id := range ids {
		if id.ID == 65537 {
			t.Fatalf("/v1/identities holds 65537, which is in cluster1's range, announced by cluster2: %+v", ids)
		}
	}
	var metrics string
	b.get(t, "/metrics", &metrics)
	if !strings.Contains(metrics, `clustermesh_agent_remote_rejected_total{cluster="cluster2",kind="identities",reason="identity outside the peer's range"} 1`) {
		t.Fatalf("/metrics does not count the spoofed identity:\n%s", metrics)
	}
	for _, want := range []string{`clustermesh_agent_peer_ready{cluster="cluster2"} 1`, `clustermesh_agent_peer_entries{cluster="cluster2",kind="ip"} 1`,
		`clustermesh_agent_peer_failures_total{cluster="cluster2"} 0`, `clustermesh_agent_reconciler_desired{table="ipcache"}`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %s:\n%s", want, metrics)
		}
	}
	lintMetrics(t, b.agent.Registry)
	pfx := netip.MustParsePrefix("10.2.1.5/32")
	node := netip.MustParsePrefix("192.168.2.1/32")
	eventually(t, "ipcache reconciled into the datapath", func() bool {
		got, _ := b.agent.Datapath.IPCache().List(t.Context())
		return cmp.Equal(datapath.IPCacheEntry{Identity: 131073, HostIP: netip.MustParseAddr("192.168.2.1"), Cluster: "cluster2"}, got[pfx],
			cmpopts.EquateComparable(netip.Addr{})) && got[node].Identity == 6 // remote-node
	})
	eventually(t, "peer node is a routing peer", func() bool {
		got, _ := b.agent.Datapath.Peers().List(t.Context())
		pe, ok := got["cluster2/n1"]
		return ok && pe.NodeIP == netip.MustParseAddr("192.168.2.1") && len(pe.PodCIDRs) == 1
	})
	removeMeshFile(t, b, p)
	eventually(t, "peer drained from the API and the datapath", func() bool {
		var ipc []localapi.PrefixEntry
		b.get(t, "/v1/ipcache", &ipc)
		got, _ := b.agent.Datapath.IPCache().List(t.Context())
		peersLeft, _ := b.agent.Datapath.Peers().List(t.Context())
		_, stillPeer := peersLeft["cluster2/n1"]
		return !containsEntry(ipc, want) && got[pfx] == (datapath.IPCacheEntry{}) && !stillPeer
	})
}

// A datapath entry the agent finds at start (pinned by its previous run) is
// kept while a configured peer is not ready, and pruned once it is.
func testNoPruneBeforeReady(t *testing.T, kube *k8stest.Cluster) {
	stale := netip.MustParsePrefix("10.3.9.9/32")
	p := meshtest.StartPeer(t, "cluster3", 3)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster3", "n1"), peerNode("cluster3", 3, 1))
	p.Put(t, paths.Identity(196609), "k8s:app=x;k8s:io.cilium.k8s.policy.cluster=cluster3;")
	p.Put(t, paths.IPDefaultPrefix()+"10.3.1.7", `{"IP":"10.3.1.7","Mask":null,"ID":196609,"Key":0,"Metadata":""}`)
	b := startAgent(t, kube, "node-noprune", func(b *agentBed) {
		if err := b.agent.Datapath.IPCache().Update(t.Context(), stale, datapath.IPCacheEntry{Identity: 196610, Cluster: "cluster3"}); err != nil {
			t.Fatal(err)
		}
		b.connect(t, p)
	})
	b.waitAPI(t)
	eventually(t, "peer connected, not ready (no synced markers)", func() bool {
		var st localapi.StatusResponse
		b.get(t, "/v1/status", &st)
		return len(st.Peers) == 1 && st.Peers[0].Connected && !st.Peers[0].Ready
	})
	testutil.Consistently(t, time.Second, "stale entry kept while the peer is not ready", func() bool {
		got, _ := b.agent.Datapath.IPCache().List(t.Context())
		_, ok := got[stale]
		return ok
	})
	if code := b.status(t, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d while a peer is not ready, want 503", code)
	}
	p.Synced()
	eventually(t, "/readyz answers 200 once every source is ready", func() bool { return b.status(t, "/readyz") == http.StatusOK })
	eventually(t, "stale entry pruned and the peer's entry programmed once ready", func() bool {
		got, _ := b.agent.Datapath.IPCache().List(t.Context())
		_, staleLeft := got[stale]
		return !staleLeft && got[netip.MustParsePrefix("10.3.1.7/32")].Identity == 196609
	})
}

func containsEntry(ipc []localapi.PrefixEntry, e localapi.PrefixEntry) bool {
	for _, x := range ipc {
		if x == e {
			return true
		}
	}
	return false
}

func TestConfigErrorsNameTheFlags(t *testing.T) {
	_, err := server.New(t.Context(), server.Config{ClusterName: "x", ClusterID: 1, Datapath: "dpdk", FlowsCapacity: -1}, nil)
	for _, want := range []string{"--node-name", "--mesh-config-dir", "--datapath", "--api-socket", "--flows-capacity"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func netipPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// lintMetrics fails the test for every problem promlint finds in the
// metrics of the agent's registry.
func lintMetrics(t *testing.T, reg prometheus.Gatherer) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if len(mfs) == 0 {
		t.Error("promlint: no metrics gathered")
	}
}
