package kvstoremesh_test

import (
	"slices"
	"testing"

	"github.com/clustermesh/clustermesh/kvstore"
)

// A key the peer deletes while the cache is cut off from it, its history
// compacted meanwhile, is drained from the cache by the relist that
// follows (and so from the agents reading the cache); nothing else is.
func TestCacheDrainsStaleKeysAfterARelist(t *testing.T) {
	l := startLocal(t)
	p, proxy := l.peerBehindProxy(t)
	paths := p.Env.Paths
	c, _ := runCache(t, l.config())
	eventually(t, "cache of cluster2 synced", func() bool { return cacheSynced(c, "cluster2") })
	sink := newRecSink()
	a := l.agent(t, "cluster2", sink)
	eventually(t, "agent ready", func() bool { return a.Status().Ready && len(sink.keys()) == 3 })

	proxy.Cut()
	admin := p.Env.Connect(t, kvstore.AdminUser).Etcd()
	p.Delete(t, paths.IPDefaultPrefix()+"10.2.1.6")
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.7", ipEntry("10.2.1.7", 131073))
	eventually(t, "the peer's changes in its etcd", func() bool {
		old, err1 := admin.Get(t.Context(), paths.IPDefaultPrefix()+"10.2.1.6")
		added, err2 := admin.Get(t.Context(), paths.IPDefaultPrefix()+"10.2.1.7")
		return err1 == nil && err2 == nil && len(old.Kvs) == 0 && len(added.Kvs) == 1
	})
	resp, err := admin.Get(t.Context(), paths.Heartbeat())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Compact(t.Context(), resp.Header.Revision); err != nil {
		t.Fatalf("compact the peer's etcd: %v", err)
	}
	proxy.Restore()

	cp := l.env.Paths.Cache("cluster2")
	eventually(t, "stale key drained from the cache after the relist", func() bool {
		return slices.Equal(l.keys(t, l.env.Paths.CacheRoot()), []string{
			cp.IPDefaultPrefix() + "10.2.1.5", cp.IPDefaultPrefix() + "10.2.1.7", cp.Node("cluster2", "n1"),
		})
	})
	eventually(t, "and from the agent", func() bool {
		return slices.Equal(sink.keys(), []string{"ip 10.2.1.5", "ip 10.2.1.7", "node n1"})
	})
	if d := sink.seenDeletes(); !slices.Equal(d, []string{"ip 10.2.1.6"}) {
		t.Fatalf("agent saw deletes %v, want only the stale ip 10.2.1.6", d)
	}
}
