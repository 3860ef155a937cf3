package remote_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

var fast = meshtest.Fast

func connect(t *testing.T, p *meshtest.Peer, reg *remote.Registry, sink remote.Sink) *remote.Cluster {
	t.Helper()
	return connectWith(t, p, p.Env.ClientConfig(t, kvstore.RemoteUser), reg, sink)
}

func connectWith(t *testing.T, p *meshtest.Peer, cfg kvstore.ClientConfig, reg *remote.Registry, sink remote.Sink) *remote.Cluster {
	t.Helper()
	c, err := remote.New(remote.Config{
		Name: p.Name, Client: cfg, Paths: p.Env.Paths,
		LocalName: "cluster1", LocalID: 1, MaxConnectedClusters: 255, Registry: reg, Sink: sink, Backoff: fast,
	})
	if err != nil {
		t.Fatal(err)
	}
	meshtest.Go(t, c.Run)
	return c
}

// peerBehindProxy starts cluster2 with a node, an identity and the ip
// entries 10.2.1.5 and 10.2.1.6, synced, and a proxy to its etcd, which
// the test cuts or holds; cfg reaches the peer through the proxy.
func peerBehindProxy(t *testing.T) (*meshtest.Peer, *kvtest.Proxy, kvstore.ClientConfig) {
	t.Helper()
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	p.Put(t, paths.Identity(131073), labels)
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.5", ipEntry("10.2.1.5", 131073))
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.6", ipEntry("10.2.1.6", 131073))
	p.Synced()
	proxy := kvtest.StartProxy(t, strings.TrimPrefix(p.Env.URL, "https://"))
	cfg := p.Env.ClientConfig(t, kvstore.RemoteUser)
	cfg.Endpoints = []string{"https://" + proxy.Addr}
	return p, proxy, cfg
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, what, cond)
}

const (
	node2  = `{"Name":"n1","Cluster":"cluster2","IPAddresses":[{"Type":"InternalIP","IP":"192.168.2.10"}],"IPv4AllocCIDR":{"IP":"10.2.1.0","Mask":"////AA=="},"ClusterID":2}`
	labels = "k8s:app=rebel-base;k8s:io.cilium.k8s.policy.cluster=cluster2;k8s:io.kubernetes.pod.namespace=default;"
)

func ipEntry(ip string, id uint32) string {
	return `{"IP":"` + ip + `","Mask":null,"HostIP":"192.168.2.10","ID":` + itoa(id) + `,"Key":0,"Metadata":""}`
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func service(cluster string, id uint32) string {
	return `{"cluster":"` + cluster + `","namespace":"default","name":"rebel-base","frontends":{},` +
		`"backends":{"10.2.1.5":{"http":{"Protocol":"TCP","Port":80}}},"labels":{},"selector":{},"includeExternal":true,"shared":true,"clusterID":` + itoa(id) + `}`
}

// Each spoofing attempt is rejected and counted while the peer's honest
// data is accepted.
func TestUntrustedPeerDataIsValidated(t *testing.T) {
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	// Honest.
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	p.Put(t, paths.Identity(131073), labels)
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.5", ipEntry("10.2.1.5", 131073))
	p.Put(t, paths.Service("cluster2", "default", "rebel-base"), service("cluster2", 2))
	// Spoofed.
	p.Put(t, paths.Node("cluster3", "evil"), strings.ReplaceAll(node2, `"cluster2"`, `"cluster3"`))
	p.Put(t, paths.Identity(65537), strings.ReplaceAll(labels, "cluster2", "cluster1"))                  // cluster1's range
	p.Put(t, paths.Identity(131074), "k8s:app=x;k8s:io.kubernetes.pod.namespace=default;")               // no cluster label
	p.Put(t, paths.Identity(131075), strings.ReplaceAll(labels, "cluster=cluster2", "cluster=cluster1")) // another cluster's label
	p.Put(t, paths.Identity(2), "reserved:world;")                                                       // reserved
	p.Put(t, paths.IPDefaultPrefix()+"8.8.8.8", ipEntry("8.8.8.8", 131073))                              // outside pod CIDRs
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.6", ipEntry("10.2.1.6", 65537))                             // foreign identity
	p.Put(t, paths.Service("cluster3", "default", "rebel-base"), service("cluster3", 3))                 // another cluster's name
	p.Synced()
	// Nodes and services written under another cluster's name are not even
	// read: the agent reads only <prefix>/cluster2/, as Cilium's does (the
	// validator's own check is exercised in TestHostilePeer's direct calls).

	sink := newMemSink()
	c := connect(t, p, remote.NewRegistry("cluster1", 1), sink)
	eventually(t, "peer ready", func() bool { return c.Status().Ready })
	want := []string{
		"identity cluster2/131073 = " + labels,
		"ip cluster2/10.2.1.5/32 = 131073",
		"node cluster2/n1 = [10.2.1.0/24]",
		"service cluster2/default/rebel-base = 1",
	}
	if diff := cmp.Diff(want, sink.keys()); diff != "" {
		t.Fatalf("accepted state (-want +got):\n%s", diff)
	}
	wantRejected := map[string]uint64{
		"identities: " + remote.ReasonOutsideRange:   1,
		"identities: " + remote.ReasonNoClusterLabel: 2,
		"identities: " + remote.ReasonReserved:       1,
		"ip: " + remote.ReasonOutsideNodeCIDR:        1,
		"ip: " + remote.ReasonOutsideRange:           1,
	}
	if diff := cmp.Diff(wantRejected, c.Status().Rejected); diff != "" {
		t.Fatalf("rejections (-want +got):\n%s", diff)
	}
}

// An ip entry announced before the node whose CIDR holds it waits, and is
// withdrawn when that node goes.
func TestIPEntriesFollowNodeCIDRs(t *testing.T) {
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.5", ipEntry("10.2.1.5", 131073))
	p.Synced()
	sink := newMemSink()
	c := connect(t, p, remote.NewRegistry("cluster1", 1), sink)
	eventually(t, "peer ready", func() bool { return c.Status().Ready })
	if got := sink.keys(); len(got) != 0 {
		t.Fatalf("ip accepted before its node: %v", got)
	}
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	eventually(t, "ip accepted once its node arrives", func() bool { return len(sink.keys()) == 2 })
	p.Delete(t, paths.Node("cluster2", "n1"))
	eventually(t, "ip withdrawn with its node", func() bool { return len(sink.keys()) == 0 })
}

// Two peers claiming one cluster ID: the second is refused with a clear status.
func TestDuplicateClusterIDRefused(t *testing.T) {
	reg := remote.NewRegistry("cluster1", 1)
	a, b := meshtest.StartPeer(t, "cluster2", 2), meshtest.StartPeer(t, "cluster3", 2)
	a.Synced()
	b.Synced()
	ca := connect(t, a, reg, newMemSink())
	eventually(t, "first peer ready", func() bool { return ca.Status().Ready })
	cb := connect(t, b, reg, newMemSink())
	eventually(t, "second peer refused", func() bool {
		st := cb.Status()
		return !st.Connected && strings.Contains(st.LastFailure, "cluster ID 2 of peer cluster3 is already used by peer cluster2")
	})
	self := meshtest.StartPeer(t, "cluster4", 1)
	self.Synced()
	cs := connect(t, self, reg, newMemSink())
	eventually(t, "peer with the local ID refused", func() bool { return strings.Contains(cs.Status().LastFailure, "local cluster's") })
}

// A change of the peer's cluster ID drains everything it announced.
func TestClusterIDChangeDrains(t *testing.T) {
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	p.Synced()
	sink := newMemSink()
	c := connect(t, p, remote.NewRegistry("cluster1", 1), sink)
	eventually(t, "node ingested", func() bool { return len(sink.keys()) == 1 })
	admin := p.Env.Connect(t, kvstore.AdminUser)
	if _, err := admin.Etcd().Put(t.Context(), paths.ClusterConfig("cluster2"), `{"id":5,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "drained under the new ID", func() bool {
		sink.mu.Lock()
		drains := sink.drains
		sink.mu.Unlock()
		return drains == 1 && c.Status().ClusterID == 5
	})
	// The node still says cluster ID 2: rejected under the new ID.
	eventually(t, "stale node rejected", func() bool { return c.Status().Rejected["nodes: "+remote.ReasonWrongClusterID] > 0 })
	if got := sink.keys(); len(got) != 0 {
		t.Fatalf("state after the ID change: %v", got)
	}
}

// A restart of the peer's etcd loses nothing and deletes nothing spuriously.
func TestPeerRestartLosesNothing(t *testing.T) {
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	p.Put(t, paths.Identity(131073), labels)
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.5", ipEntry("10.2.1.5", 131073))
	p.Synced()
	sink := newMemSink()
	c := connect(t, p, remote.NewRegistry("cluster1", 1), sink)
	eventually(t, "peer ready", func() bool { return c.Status().Ready && len(sink.keys()) == 3 })
	before := sink.keys()
	p.Env.Stop()
	// While its watches fail and retry, the agent keeps the peer's state.
	testutil.Consistently(t, 500*time.Millisecond, "state unchanged while the peer is down", func() bool {
		return cmp.Equal(before, sink.keys())
	})
	p.Env.Restart(t)
	p.Put(t, paths.Identity(131076), strings.ReplaceAll(labels, "rebel-base", "new"))
	eventually(t, "new identity after restart", func() bool { return len(sink.keys()) == 4 })
	if n := sink.deletes(); n != 0 {
		t.Fatalf("%d deletes after a peer restart, want none", n)
	}
}

// Keys deleted while the agent is cut off from the peer (and compacted
// away, so the watch cannot resume) are deleted once it is back, and
// nothing else is.
//
// The peer's history is compacted at a revision written after the delete:
// compacting at the delete's own revision (what the test did) leaves the
// tombstone readable there, so whether the agent learnt of the delete
// through its resumed watch or through the relist the test is about
// depended on whether anything (the peer's last synced markers) was
// written between the agent's list of the ip entries and the delete, that
// is on scheduling. Now the resumed watches are always refused as
// compacted, and the agent must relist.
func TestKeyDeletedWhileDisconnected(t *testing.T) {
	p, proxy, cfg := peerBehindProxy(t)
	paths := p.Env.Paths
	sink := newMemSink()
	c := connectWith(t, p, cfg, remote.NewRegistry("cluster1", 1), sink)
	state := func() string { return fmt.Sprintf("status %+v, state %v", c.Status(), sink.keys()) }
	eventually(t, "peer ready", func() bool { return c.Status().Ready && len(sink.keys()) == 4 })
	failuresBefore := c.Status().Failures
	proxy.Cut()
	p.Delete(t, paths.IPDefaultPrefix()+"10.2.1.6")
	admin := p.Env.Connect(t, kvstore.AdminUser).Etcd()
	eventually(t, "deleted in the peer's etcd", func() bool {
		r, err := admin.Get(t.Context(), paths.IPDefaultPrefix()+"10.2.1.6")
		return err == nil && r.Count == 0
	})
	// A write after the delete: the compaction below removes the
	// tombstone's revision from the history the agent's watches would
	// resume at.
	r, err := admin.Put(t.Context(), "compact-me", "after the delete")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Compact(t.Context(), r.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if got := sink.keys(); len(got) != 4 {
		t.Fatalf("state changed while cut off: %v", got)
	}
	proxy.Restore()
	eventually(t, "the deleted ip entry is gone after reconnect", func() bool { return len(sink.keys()) == 3 })
	if n := sink.deletes(); n != 1 {
		t.Fatalf("%d deletes after reconnect, want exactly the one deleted key (%s)", n, state())
	}
	for _, k := range sink.keys() {
		if strings.Contains(k, "10.2.1.6") {
			t.Fatalf("deleted entry still present: %s", state())
		}
	}
	// The cluster-config watch cannot resume either: the agent
	// reconnects, and says why (its watch may learn it after the ip
	// entries' relist: waited for).
	eventually(t, "a reconnection after the compaction, naming it", func() bool {
		st := c.Status()
		return st.Failures > failuresBefore && strings.Contains(st.LastFailure, "compacted")
	})
	if n := sink.deletes(); n != 1 {
		t.Fatalf("%d deletes after the reconnection, want exactly the one deleted key (%s)", n, state())
	}
}
