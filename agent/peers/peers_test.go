package peers_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/agent/peers"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// countSink counts nodes per cluster and drains.
type countSink struct {
	mu     sync.Mutex
	nodes  map[string]int
	drains []string
}

func (s *countSink) UpsertNode(c string, _ schema.Node) { s.mu.Lock(); s.nodes[c]++; s.mu.Unlock() }
func (s *countSink) DeleteNode(c, _ string)             { s.mu.Lock(); s.nodes[c]--; s.mu.Unlock() }
func (s *countSink) Drain(c string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drains = append(s.drains, c)
	s.nodes[c] = 0
}
func (*countSink) UpsertIdentity(string, identity.NumericIdentity, identity.Labels) {}
func (*countSink) DeleteIdentity(string, identity.NumericIdentity)                  {}
func (*countSink) UpsertIP(string, netip.Prefix, schema.IPEntry)                    {}
func (*countSink) DeleteIP(string, netip.Prefix)                                    {}
func (*countSink) UpsertService(string, schema.ClusterService)                      {}
func (*countSink) DeleteService(string, string, string)                             {}

func (s *countSink) get() (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodes["cluster2"], append([]string(nil), s.drains...)
}

// startPeer runs cluster2's etcd with a cluster config, one node and every
// synced marker.
func startPeer(t *testing.T) *kvtest.Env {
	t.Helper()
	env := kvtest.Start(t, kvtest.Options{Cluster: "cluster2"})
	admin := env.Connect(t, kvstore.AdminUser).Etcd()
	p := env.Paths
	kvs := map[string]string{
		p.ClusterConfig("cluster2"): `{"id":2,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}`,
		p.Node("cluster2", "n1"):    `{"Name":"n1","Cluster":"cluster2","ClusterID":2}`,
	}
	for _, prefix := range []string{p.NodesPrefix(), p.IdentitiesPrefix(), p.IPPrefix(), p.ServicesPrefix()} {
		kvs[p.Synced("cluster2", prefix)] = "2026-11-22T00:00:00Z"
	}
	for k, v := range kvs {
		if _, err := admin.Put(t.Context(), k, v); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

func writeConfig(t *testing.T, dir, name string, cfg kvstore.ClientConfig) {
	t.Helper()
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil { // atomic, like a Secret update
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, what, cond)
}

func TestDirectoryDrivesPeers(t *testing.T) {
	env := startPeer(t)
	dir := t.TempDir()
	sink := &countSink{nodes: map[string]int{}}
	m := peers.New(peers.Config{
		Dir: dir, PollInterval: 20 * time.Millisecond, LocalName: "cluster1", LocalID: 1, MaxConnectedClusters: 255,
		Paths: schema.DefaultPaths(), Sink: sink, Backoff: backoff.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// Added: connects.
	writeConfig(t, dir, "cluster2", env.ClientConfig(t, kvstore.RemoteUser))
	eventually(t, "peer ready", func() bool { st := m.Status(); return len(st) == 1 && st[0].Ready })
	if n, _ := sink.get(); n != 1 {
		t.Fatalf("nodes of cluster2 = %d, want 1", n)
	}

	// Changed (another user's certificate): reconnects without draining.
	admin := env.Connect(t, kvstore.AdminUser).Etcd()
	if err := kvstore.AddPeerUser(t.Context(), admin, "cluster1"); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, dir, "cluster2", env.ClientConfig(t, kvstore.PeerUser("cluster1")))
	// The new connection lists the peer again: its node is upserted again.
	eventually(t, "reconnected as the per-peer user", func() bool {
		st := m.Status()
		n, _ := sink.get()
		return len(st) == 1 && st[0].Ready && st[0].Failures == 0 && n == 2
	})
	if _, drains := sink.get(); len(drains) != 0 {
		t.Fatalf("a changed file drained the peer: %v", drains)
	}

	// A file that does not parse is reported, and removes the peer.
	if err := os.WriteFile(filepath.Join(dir, "cluster2"), []byte("endpoints: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bad file reported", func() bool {
		st := m.Status()
		return len(st) == 1 && strings.Contains(st[0].LastFailure, filepath.Join(dir, "cluster2"))
	})
	// A bad file name is reported too.
	if err := os.WriteFile(filepath.Join(dir, "Not_A_Cluster"), []byte("endpoints: [http://x:1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bad name reported", func() bool {
		for _, st := range m.Status() {
			if st.Name == "Not_A_Cluster" && strings.Contains(st.LastFailure, "cluster name") {
				return true
			}
		}
		return false
	})

	// Removed: disconnects and drains.
	writeConfig(t, dir, "cluster2", env.ClientConfig(t, kvstore.RemoteUser))
	eventually(t, "ready again", func() bool {
		for _, st := range m.Status() {
			if st.Name == "cluster2" && st.Ready {
				return true
			}
		}
		return false
	})
	if err := os.Remove(filepath.Join(dir, "cluster2")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "drained", func() bool { n, drains := sink.get(); return n == 0 && len(drains) >= 1 })
}
