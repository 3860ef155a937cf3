package kvstoremesh_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// The cache publishes its connection to each peer in the local etcd: a
// silent partition from the peer (the agents reading the cache are not cut
// off) turns it unconnected with the reason, the heal connected again, and
// a peer removed from the mesh directory loses its key.
func TestCachePublishesPeerConnection(t *testing.T) {
	l := startLocal(t)
	_, proxy := l.peerBehindProxy(t)
	ccfg := l.config()
	ccfg.ProbeInterval = 100 * time.Millisecond
	c, _ := runCache(t, ccfg)
	eventually(t, "cache of cluster2 synced", func() bool { return cacheSynced(c, "cluster2") })

	key := l.env.Paths.CacheStatus("cluster2")
	published := func() (schema.CachePeerState, bool) {
		resp, err := l.admin.Etcd().Get(t.Context(), key)
		if err != nil || len(resp.Kvs) == 0 {
			return schema.CachePeerState{}, false
		}
		st, err := schema.DecodeCachePeerState(key, resp.Kvs[0].Value)
		if err != nil {
			t.Fatal(err)
		}
		return st, true
	}
	eventually(t, "connected and ready published", func() bool {
		st, ok := published()
		return ok && st.Connected && st.Ready
	})

	proxy.Hold()
	eventually(t, "unreachable published", func() bool {
		st, ok := published()
		return ok && !st.Connected && st.Ready && strings.Contains(st.LastFailure, "unreachable") && !st.LastFailureTime.IsZero()
	})
	if n := len(l.keys(t, l.env.Paths.Cache("cluster2").IPDefaultPrefix())); n != 2 {
		t.Fatalf("%d cached ip entries of the unreachable peer, want its last-known 2", n)
	}
	proxy.Restore()
	eventually(t, "connected published after the heal", func() bool {
		st, ok := published()
		return ok && st.Connected && st.Ready
	})

	if err := os.Remove(filepath.Join(l.dir, "cluster2")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the removed peer's connection state deleted", func() bool {
		_, ok := published()
		return !ok
	})
}
