package kvstoremesh_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/agent/peers"
	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/kvstore"
)

// node3 is cluster3's node (pod CIDR 10.3.0.0/16).
const node3 = `{"Name":"m1","Cluster":"cluster3","IPAddresses":[{"Type":"InternalIP","IP":"192.168.3.10"}],"IPv4AllocCIDR":{"IP":"10.3.0.0","Mask":"//8AAA=="},"ClusterID":3}`

// An agent given the cache's config (--clustermesh-cache-config) reads
// every peer of its mesh directory from the local etcd's cache, with the
// local user, and none from the peer's own etcd: the same mesh directory as
// the cache's, with the recorded cluster IDs still enforced.
func TestAgentsReadEveryPeerThroughTheCache(t *testing.T) {
	l := startLocal(t)
	p2 := meshtest.StartPeer(t, "cluster2", 2)
	p2.Put(t, p2.Paths.Node("cluster2", "n1"), node2)
	p2.Put(t, p2.Paths.IPDefaultPrefix()+"10.2.1.5", ipEntry("10.2.1.5", 131073))
	p2.Synced()
	p3 := meshtest.StartPeer(t, "cluster3", 3)
	p3.Put(t, p3.Paths.Node("cluster3", "m1"), node3)
	p3.Synced()
	p2.WriteMeshFile(t, l.dir)
	p3.WriteMeshFile(t, l.dir)
	c, _ := runCache(t, l.config())
	eventually(t, "both peers cached", func() bool { return cacheSynced(c, "cluster2") && cacheSynced(c, "cluster3") })

	// The agents' mesh directory: the same peer files, with the IDs
	// `clustermesh connect` records, plus the cache's config.
	agentDir := t.TempDir()
	for name, id := range map[string]uint32{"cluster2": 2, "cluster3": 3} {
		raw, err := os.ReadFile(filepath.Join(l.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := kvstore.ParseClientConfig(raw)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ClusterID = id
		writeYAML(t, filepath.Join(agentDir, name), cfg)
	}
	cacheFile := filepath.Join(t.TempDir(), "cache.yaml")
	writeYAML(t, cacheFile, l.env.ClientConfig(t, kvstore.LocalUser))
	sink := newRecSink()
	m := peers.New(peers.Config{Dir: agentDir, LocalName: "cluster1", LocalID: 1, MaxConnectedClusters: 255,
		Paths: l.env.Paths, Sink: sink, Backoff: meshtest.Fast, CacheConfigFile: cacheFile})
	meshtest.Go(t, m.Run)
	eventually(t, "agent ready for both peers through the cache", func() bool {
		st := m.Status()
		return len(st) == 2 && st[0].Ready && st[1].Ready &&
			slices.Equal(sink.keys(), []string{"ip 10.2.1.5", "node m1", "node n1"})
	})
	for _, st := range m.Status() {
		if !st.Cached || !st.ThroughCache || len(st.Rejected) != 0 {
			t.Fatalf("peer %s: cached %v, through the cache %v, rejected %v", st.Name, st.Cached, st.ThroughCache, st.Rejected)
		}
	}

	// The peers' own etcds are not what the agents read: stopping one
	// changes nothing for them (the cache keeps its last state).
	p3.Env.Stop()
	if got := sink.keys(); !slices.Equal(got, []string{"ip 10.2.1.5", "node m1", "node n1"}) {
		t.Fatalf("agent state after a peer's etcd stopped: %v", got)
	}
	if st := m.Status(); !st[1].Connected {
		t.Fatalf("agent lost %s when the peer's etcd stopped: %+v", st[1].Name, st[1])
	}

	// A recorded ID the cache does not announce is refused, as from the
	// peer directly.
	raw, _ := os.ReadFile(filepath.Join(agentDir, "cluster2"))
	cfg, _ := kvstore.ParseClientConfig(raw)
	cfg.ClusterID = 7
	writeYAML(t, filepath.Join(agentDir, "cluster2"), cfg)
	eventually(t, "a pinned ID the cache does not announce refused", func() bool {
		st := m.Status()
		return !st[0].Connected && strings.Contains(st[0].LastFailure, remote.ErrClusterIDMismatch.Error())
	})
}

// An agent reading a peer through an etcd that holds the peer's config
// without the "cached" capability (not a cache) refuses it, naming why.
func TestAgentThroughCacheRefusesAnUncachedConfig(t *testing.T) {
	l := startLocal(t)
	p := meshtest.StartPeer(t, "cluster2", 2)
	p.Synced()
	agentDir := t.TempDir()
	p.WriteMeshFile(t, agentDir)
	cacheFile := filepath.Join(t.TempDir(), "cache.yaml")
	// The "cache" is the peer's own etcd: its config is not cached.
	writeYAML(t, cacheFile, p.Env.ClientConfig(t, kvstore.AdminUser))
	m := peers.New(peers.Config{Dir: agentDir, LocalName: "cluster1", LocalID: 1, MaxConnectedClusters: 255,
		Paths: l.env.Paths, Sink: newRecSink(), Backoff: meshtest.Fast, CacheConfigFile: cacheFile})
	meshtest.Go(t, m.Run)
	eventually(t, "uncached config refused", func() bool {
		st := m.Status()
		return len(st) == 1 && strings.Contains(st[0].LastFailure, `does not have the "cached" capability`)
	})
	// And a cache config that does not parse is every peer's error.
	if err := os.WriteFile(cacheFile, []byte("endpoints: [\"ftp://x\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bad cache config named", func() bool {
		st := m.Status()
		return len(st) == 1 && strings.Contains(st[0].LastFailure, "--clustermesh-cache-config")
	})
}

func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
