package remote_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// A peer whose cluster config has the "cached" capability is read from the
// cache layout (Cilium's KVStoreMesh keys), and only from it: state-layout
// keys in the same etcd are not the peer's announcement. When the
// capability goes away, the cached state is drained and the state layout
// read.
func TestCachedCapabilityReadsTheCacheLayout(t *testing.T) {
	p := meshtest.StartPeerWith(t, "cluster2", 2, meshtest.PeerOptions{Cached: true})
	cache, state := p.Paths, p.Env.Paths
	p.Put(t, cache.Node("cluster2", "n1"), node2)
	p.Put(t, cache.Identity(131073), labels)
	p.Put(t, cache.IPDefaultPrefix()+"10.2.1.5", ipEntry("10.2.1.5", 131073))
	p.Put(t, cache.Service("cluster2", "default", "rebel-base"), service("cluster2", 2))
	p.Synced()
	// A state-layout entry next to the cache: not read while cached.
	admin := p.Env.Connect(t, kvstore.AdminUser).Etcd()
	if _, err := admin.Put(t.Context(), state.IPDefaultPrefix()+"10.2.1.6", ipEntry("10.2.1.6", 131073)); err != nil {
		t.Fatal(err)
	}
	sink := newMemSink()
	// The cache is read with the admin user: reading a cache is a local
	// agent's job, with the local etcd's credentials.
	c := connectWith(t, p, p.Env.ClientConfig(t, kvstore.AdminUser), remote.NewRegistry("cluster1", 1), sink)
	want := []string{
		"identity cluster2/131073", "ip cluster2/10.2.1.5/32", "node cluster2/n1", "service cluster2/default/rebel-base",
	}
	eventually(t, "cached state read", func() bool { return c.Status().Ready && slices.Equal(sink.names(), want) })
	if !c.Status().Cached {
		t.Error("status does not say the peer is read from a cache")
	}
	if r := c.Status().Rejected; len(r) != 0 {
		t.Fatalf("rejected %v", r)
	}

	// The cache is turned off: the state layout is read instead.
	if _, err := admin.Put(t.Context(), state.Node("cluster2", "n1"), node2); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Put(t.Context(), state.Synced("cluster2", state.NodesPrefix()), "x"); err != nil {
		t.Fatal(err)
	}
	for _, pre := range []string{state.IdentitiesPrefix(), state.IPPrefix(), state.ServicesPrefix()} {
		if _, err := admin.Put(t.Context(), state.Synced("cluster2", pre), "x"); err != nil {
			t.Fatal(err)
		}
	}
	p.SetConfig(t, schema.ClusterConfig{ID: 2, Capabilities: schema.ClusterConfigCapabilities{SyncedCanaries: true, MaxConnectedClusters: 255}})
	eventually(t, "state layout read after the cache went away", func() bool {
		return !c.Status().Cached && slices.Equal(sink.names(), []string{"ip cluster2/10.2.1.6/32", "node cluster2/n1"})
	})
}

// A peer that exports no ClusterService (Cilium's endpointSlicesExportMode
// "endpointslices-only") has its services drained and reported synced, as
// Cilium's agent does; the rest of its state stays. When it exports them
// again, they come back.
func TestEndpointSlicesOnlyPeerHasNoServices(t *testing.T) {
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	p.Put(t, paths.Service("cluster2", "default", "rebel-base"), service("cluster2", 2))
	p.Synced()
	sink := newMemSink()
	c := connect(t, p, remote.NewRegistry("cluster1", 1), sink)
	withService := []string{"node cluster2/n1", "service cluster2/default/rebel-base"}
	eventually(t, "service read", func() bool { return c.Status().Ready && slices.Equal(sink.names(), withService) })

	cfg := func(mode schema.EndpointSlicesExportMode) schema.ClusterConfig {
		return schema.ClusterConfig{ID: 2, Capabilities: schema.ClusterConfigCapabilities{
			SyncedCanaries: true, MaxConnectedClusters: 255, EndpointSlicesExportMode: mode}}
	}
	p.SetConfig(t, cfg(schema.EndpointSlicesExportModeEndpointSlicesOnly))
	eventually(t, "services drained, the rest kept, still ready", func() bool {
		st := c.Status()
		return st.Ready && st.NoServices != "" && slices.Equal(sink.names(), []string{"node cluster2/n1"})
	})
	sink.mu.Lock()
	n := sink.drains
	sink.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d full drains, want none: only the services go", n)
	}
	p.SetConfig(t, cfg(schema.EndpointSlicesExportModeServicesAndEndpointSlices))
	eventually(t, "services back", func() bool {
		st := c.Status()
		return st.Ready && st.NoServices == "" && slices.Equal(sink.names(), withService)
	})
}

// names returns the sink's keys without their values, sorted.
func (s *memSink) names() []string {
	out := s.keys()
	for i, k := range out {
		out[i], _, _ = strings.Cut(k, " = ")
	}
	return out
}

// A key the peer deleted while no connection read it is reported deleted
// by the next connection: its stores adopt the previous connection's keys.
// The gap is made deterministic by a cluster config this cluster refuses
// (another max-connected-clusters), during which nothing is read.
func TestDeleteBetweenConnectionsIsSeen(t *testing.T) {
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.5", ipEntry("10.2.1.5", 131073))
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.6", ipEntry("10.2.1.6", 131073))
	p.Synced()
	sink := newMemSink()
	c := connect(t, p, remote.NewRegistry("cluster1", 1), sink)
	eventually(t, "peer ready", func() bool {
		return c.Status().Ready && slices.Equal(sink.names(), []string{"ip cluster2/10.2.1.5/32", "ip cluster2/10.2.1.6/32", "node cluster2/n1"})
	})
	failures := c.Status().Failures
	p.SetConfig(t, schema.ClusterConfig{ID: 2, Capabilities: schema.ClusterConfigCapabilities{SyncedCanaries: true, MaxConnectedClusters: 511}})
	eventually(t, "the refused config stops the connection", func() bool {
		st := c.Status()
		return st.Failures > failures && strings.Contains(st.LastFailure, "max connected clusters")
	})
	p.Delete(t, paths.IPDefaultPrefix()+"10.2.1.6")
	p.SetClusterConfig(t, 2)
	eventually(t, "the delete made while nothing read the peer is seen", func() bool {
		return slices.Equal(sink.names(), []string{"ip cluster2/10.2.1.5/32", "node cluster2/n1"})
	})
	if n := sink.deletes(); n != 1 {
		t.Fatalf("%d deletes, want the one deleted key", n)
	}
}
