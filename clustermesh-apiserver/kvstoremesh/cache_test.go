package kvstoremesh_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/clustermesh-apiserver/kvstoremesh"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/kvstore"
)

// The cache mirrors what a peer announces and the agent's rules accept,
// under the cache layout with the peer's cluster config ("cached"), and
// refuses (and counts) what a lying peer adds; a local agent reading the
// cache with the local user gets exactly the honest state.
func TestCacheMirrorsValidatedState(t *testing.T) {
	l := startLocal(t)
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	p.Put(t, paths.Identity(131073), labels)
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.5", ipEntry("10.2.1.5", 131073))
	p.Put(t, paths.Service("cluster2", "default", "rebel-base"), service("cluster2", 2))
	// Lies.
	p.Put(t, paths.Identity(65537), strings.ReplaceAll(labels, "cluster2", "cluster1"))                  // cluster1's range
	p.Put(t, paths.Identity(131075), strings.ReplaceAll(labels, "cluster=cluster2", "cluster=cluster3")) // another cluster's label
	p.Put(t, paths.Identity(2), "reserved:world;")                                                       // reserved
	p.Put(t, paths.IPDefaultPrefix()+"8.8.8.8", ipEntry("8.8.8.8", 131073))                              // outside its pod CIDRs
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.6", ipEntry("10.2.1.6", 65537))                             // another cluster's identity
	p.Put(t, paths.Service("cluster3", "default", "rebel-base"), service("cluster3", 3))                 // another cluster's name
	p.Synced()
	p.WriteMeshFile(t, l.dir)

	c, _ := runCache(t, l.config())
	eventually(t, "cache of cluster2 synced", func() bool { return cacheSynced(c, "cluster2") })

	cp := l.env.Paths.Cache("cluster2")
	want := []string{
		cp.Identity(131073),
		cp.IPDefaultPrefix() + "10.2.1.5",
		cp.Node("cluster2", "n1"),
		cp.Service("cluster2", "default", "rebel-base"),
	}
	if diff := cmp.Diff(want, l.keys(t, l.env.Paths.CacheRoot())); diff != "" {
		t.Fatalf("cached keys (-want +got):\n%s", diff)
	}
	var markers []string
	for _, pre := range []string{cp.IdentitiesPrefix(), cp.IPPrefix(), cp.NodesPrefix(), cp.ServicesPrefix()} {
		markers = append(markers, cp.Synced("cluster2", pre))
	}
	if diff := cmp.Diff(markers, l.keys(t, cp.SyncedPrefix("cluster2"))); diff != "" {
		t.Fatalf("synced markers (-want +got):\n%s", diff)
	}
	cc, err := kvstore.GetClusterConfig(t.Context(), l.admin, l.env.Paths, "cluster2")
	if err != nil {
		t.Fatal(err)
	}
	if cc.ID != 2 || !cc.Capabilities.Cached || !cc.Capabilities.SyncedCanaries || cc.Capabilities.MaxConnectedClusters != 255 {
		t.Fatalf("published cluster config %+v: want ID 2, cached, synced canaries, 255 clusters", cc)
	}
	st := c.Status()
	wantRejected := map[string]uint64{
		"identities: " + remote.ReasonOutsideRange:   1,
		"identities: " + remote.ReasonNoClusterLabel: 1,
		"identities: " + remote.ReasonReserved:       1,
		"ip: " + remote.ReasonOutsideNodeCIDR:        1,
		"ip: " + remote.ReasonOutsideRange:           1,
	}
	if diff := cmp.Diff(wantRejected, st[0].Rejected); diff != "" {
		t.Fatalf("rejections counted by the cache (-want +got):\n%s", diff)
	}

	// A local agent reads the peer from the local etcd's cache.
	sink := newRecSink()
	a := l.agent(t, "cluster2", sink)
	eventually(t, "agent ready from the cache", func() bool { return a.Status().Ready })
	wantAgent := []string{"identity 131073", "ip 10.2.1.5", "node n1", "service default/rebel-base"}
	if diff := cmp.Diff(wantAgent, sink.keys()); diff != "" {
		t.Fatalf("agent's state read from the cache (-want +got):\n%s", diff)
	}
	if ast := a.Status(); !ast.Cached || len(ast.Rejected) != 0 {
		t.Fatalf("agent status: cached %v, rejected %v; want cached and nothing rejected", ast.Cached, ast.Rejected)
	}

	// The peer's later changes reach the agent through the cache.
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.7", ipEntry("10.2.1.7", 131073))
	p.Delete(t, paths.IPDefaultPrefix()+"10.2.1.5")
	eventually(t, "agent follows the peer's changes through the cache", func() bool {
		return cmp.Equal(sink.keys(), []string{"identity 131073", "ip 10.2.1.7", "node n1", "service default/rebel-base"})
	})
}

// A kind's synced marker is written only after every key of the peer's
// initial list of that kind is in the local etcd: a reader that sees the
// marker sees the whole set. Nothing is cached of a kind the peer has not
// finished exporting.
func TestCacheMarkersOnlyAfterInitialSync(t *testing.T) {
	l := startLocal(t)
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	const n = 600 // several batches of the cache's writers
	for i := range n {
		p.Put(t, paths.IPDefaultPrefix()+ipOf(i), ipEntry(ipOf(i), 131073))
	}
	p.WriteMeshFile(t, l.dir)
	c, _ := runCache(t, l.config())
	eventually(t, "cluster2's config published", func() bool {
		st := c.Status()
		return len(st) == 1 && st[0].Published
	})
	cp := l.env.Paths.Cache("cluster2")
	if got := l.keys(t, l.env.Paths.SyncedRoot()); len(got) != 0 {
		t.Fatalf("synced markers before the peer synced: %v", got)
	}
	if got := l.keys(t, l.env.Paths.CacheRoot()); len(got) != 0 {
		t.Fatalf("cached before the peer synced: %d keys", len(got))
	}

	p.Synced()
	eventually(t, "cache of cluster2 synced", func() bool { return cacheSynced(c, "cluster2") })
	resp, err := l.admin.Etcd().Get(t.Context(), cp.IPDefaultPrefix(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	marker, err := l.admin.Etcd().Get(t.Context(), cp.Synced("cluster2", cp.IPPrefix()))
	if err != nil || len(marker.Kvs) != 1 {
		t.Fatalf("ip marker: %v", err)
	}
	if len(resp.Kvs) != n {
		t.Fatalf("%d ip entries cached, want %d", len(resp.Kvs), n)
	}
	for _, kv := range resp.Kvs {
		if kv.CreateRevision > marker.Kvs[0].CreateRevision {
			t.Fatalf("%s written at revision %d, after the synced marker (%d)", kv.Key, kv.CreateRevision, marker.Kvs[0].CreateRevision)
		}
	}
}

// A lost peer keeps its cached state (by default forever); with a cache
// TTL, once its heartbeat has not moved for that long, its state is
// drained (agents watching the cache see the deletes) and read again when
// it is back.
func TestCacheLostPeerKeptThenDrainedAfterTTL(t *testing.T) {
	l := startLocal(t)
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	p.Put(t, paths.Identity(131073), labels)
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.5", ipEntry("10.2.1.5", 131073))
	p.Synced()
	p.WriteMeshFile(t, l.dir)
	admin := p.Env.Connect(t, kvstore.AdminUser)
	meshtest.Go(t, func(ctx context.Context) error {
		return kvstore.RunHeartbeat(ctx, admin, paths, 100*time.Millisecond, nil, nil)
	})
	const ttl = 3 * time.Second
	cfg := l.config()
	cfg.CacheTTL = ttl
	c, _ := runCache(t, cfg)
	eventually(t, "cache of cluster2 synced", func() bool { return cacheSynced(c, "cluster2") })
	sink := newRecSink()
	a := l.agent(t, "cluster2", sink)
	eventually(t, "agent ready", func() bool { return a.Status().Ready && len(sink.keys()) == 3 })

	lost := time.Now()
	p.Env.Stop()
	eventually(t, "stale peer drained from the cache and the agent", func() bool {
		return c.Status()[0].Revoked && len(l.keys(t, l.env.Paths.CacheRoot())) == 0 && len(sink.keys()) == 0
	})
	if d := time.Since(lost); d < ttl {
		t.Fatalf("drained %v after the peer was lost, before the TTL %v", d, ttl)
	}
	if got := l.keys(t, l.env.Paths.SyncedPrefix("cluster2")); len(got) != 0 {
		t.Fatalf("synced markers of a drained peer: %v", got)
	}

	p.Env.Restart(t)
	eventually(t, "peer cached again and read by the agent once it is back", func() bool {
		return cacheSynced(c, "cluster2") && len(sink.keys()) == 3
	})
}

// Without a TTL, a lost peer's cached state is kept, also across a
// reconnection that fails.
func TestCacheLostPeerKeptWithoutTTL(t *testing.T) {
	l := startLocal(t)
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.5", ipEntry("10.2.1.5", 131073))
	p.Synced()
	p.WriteMeshFile(t, l.dir)
	c, _ := runCache(t, l.config())
	eventually(t, "cache of cluster2 synced", func() bool { return cacheSynced(c, "cluster2") })
	p.Env.Stop()
	// A new certificate in the peer's file makes the cache reconnect
	// (without draining), which fails while the peer is down.
	p.WriteMeshFile(t, l.dir)
	eventually(t, "cache fails to reach the lost peer", func() bool {
		st := c.Status()
		return len(st) == 1 && !st[0].Connected && st[0].Failures > 0
	})
	if got := l.keys(t, l.env.Paths.CacheRoot()); len(got) != 2 {
		t.Fatalf("cache of a lost peer: %v, want its 2 keys kept", got)
	}
	if got := l.keys(t, l.env.Paths.SyncedPrefix("cluster2")); len(got) != 4 {
		t.Fatalf("synced markers of a lost peer: %v, want 4 kept", got)
	}
}

// A peer whose cluster ID changes is drained from the cache (agents see
// its old state go) and cached again under the new ID, whose config the
// cache publishes.
func TestCachePeerIDChangeDrains(t *testing.T) {
	l := startLocal(t)
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	p.Put(t, paths.Identity(131073), labels)
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.5", ipEntry("10.2.1.5", 131073))
	p.Synced()
	p.WriteMeshFile(t, l.dir)
	c, _ := runCache(t, l.config())
	eventually(t, "cache of cluster2 synced", func() bool { return cacheSynced(c, "cluster2") })
	sink := newRecSink()
	a := l.agent(t, "cluster2", sink)
	eventually(t, "agent ready", func() bool { return a.Status().Ready && len(sink.keys()) == 3 })

	// The peer now says it is cluster 3; its old identity and entry are
	// outside the new range, its new ones inside.
	p.Put(t, paths.Identity(196609), labels)
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.9", ipEntry("10.2.1.9", 196609))
	p.Put(t, paths.Node("cluster2", "n1"), strings.Replace(node2, `"ClusterID":2`, `"ClusterID":3`, 1))
	p.SetClusterConfig(t, 3)
	cp := l.env.Paths.Cache("cluster2")
	eventually(t, "cache drained and refilled under ID 3", func() bool {
		cc, err := kvstore.GetClusterConfig(t.Context(), l.admin, l.env.Paths, "cluster2")
		return err == nil && cc.ID == 3 && cacheSynced(c, "cluster2") && cmp.Equal(l.keys(t, l.env.Paths.CacheRoot()), []string{
			cp.Identity(196609), cp.IPDefaultPrefix() + "10.2.1.9", cp.Node("cluster2", "n1"),
		})
	})
	eventually(t, "agent holds only the new ID's state", func() bool {
		return a.Status().ClusterID == 3 && cmp.Equal(sink.keys(), []string{"identity 196609", "ip 10.2.1.9", "node n1"})
	})
	if r := c.Status()[0].Rejected; r["identities: "+remote.ReasonOutsideRange] == 0 {
		t.Fatalf("the old ID's identity was not refused under the new ID: %v", r)
	}
}

// A peer removed from the mesh configuration is drained from the cache,
// its markers and its cluster config deleted.
func TestCacheRemovedPeerIsDrained(t *testing.T) {
	l := startLocal(t)
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	p.Synced()
	p.WriteMeshFile(t, l.dir)
	c, _ := runCache(t, l.config())
	eventually(t, "cache of cluster2 synced", func() bool { return cacheSynced(c, "cluster2") })
	if err := os.Remove(filepath.Join(l.dir, "cluster2")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "cache, markers and config of the removed peer deleted", func() bool {
		return len(l.keys(t, l.env.Paths.CacheRoot())) == 0 && len(l.keys(t, l.env.Paths.SyncedRoot())) == 0 &&
			len(l.keys(t, l.env.Paths.ClusterConfig("cluster2"))) == 0
	})
}

// The cache refuses bad configuration with an error naming it.
func TestCacheConfigErrors(t *testing.T) {
	l := startLocal(t)
	for name, tc := range map[string]struct {
		mutate func(*kvstoremesh.Config)
		want   string
	}{
		"no dir":      {func(c *kvstoremesh.Config) { c.MeshConfigDir = "" }, "mesh configuration directory"},
		"bad name":    {func(c *kvstoremesh.Config) { c.LocalName = "Bad_Name" }, "local cluster name"},
		"negative":    {func(c *kvstoremesh.Config) { c.CacheTTL = -time.Second }, "cache TTL"},
		"short lease": {func(c *kvstoremesh.Config) { c.LeaseTTL = time.Second }, "lease TTL"},
		"no etcd":     {func(c *kvstoremesh.Config) { c.Local = nil }, "local etcd"},
		"clusters":    {func(c *kvstoremesh.Config) { c.MaxConnectedClusters = 100 }, "100"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := l.config()
			tc.mutate(&cfg)
			_, err := kvstoremesh.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}
