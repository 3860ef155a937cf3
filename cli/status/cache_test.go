package status

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// probeCache reads the cache of remote state from the cluster's etcd: the
// peers whose cluster config has the "cached" capability, their markers
// and their number of cached keys; neither the cluster's own config nor a
// peer config without the capability is a cached peer.
func TestProbeCache(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{Cluster: "c1"})
	admin := env.Connect(t, kvstore.AdminUser)
	p := env.Paths
	cp := p.Cache("c2")
	for k, v := range map[string]string{
		p.ClusterConfig("c1"):                  `{"id":1,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}`,
		p.ClusterConfig("c2"):                  `{"id":2,"capabilities":{"syncedCanaries":true,"cached":true,"maxConnectedClusters":255}}`,
		p.ClusterConfig("c3"):                  `{"id":3,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}`,
		cp.Node("c2", "n1"):                    "{}",
		cp.Node("c2", "n2"):                    "{}",
		cp.IPDefaultPrefix() + "10.2.1.5":      "{}",
		cp.Synced("c2", cp.NodesPrefix()):      "t",
		cp.Synced("c2", cp.IdentitiesPrefix()): "t",
		p.CacheStatus("c2"):                    `{"connected":false,"ready":true,"failures":1,"lastFailure":"peer c2 unreachable"}`,
		p.CacheStatus("c3"):                    `{"connected":true,"ready":false,"failures":0}`,
		p.ClusterConfig("c4"):                  `{"id":4,"capabilities":{"syncedCanaries":true,"cached":true,"maxConnectedClusters":255}}`,
		p.CacheStatus("c4"):                    `{"connected":"yes"`,
	} {
		if _, err := admin.Etcd().Put(t.Context(), k, v); err != nil {
			t.Fatal(err)
		}
	}
	// c4's connection state does not decode: the error names its key, and
	// nothing else is lost (c4 is listed without it).
	got, err := probeCache(t.Context(), admin, &mesh.Settings{Name: "c1", Paths: p})
	if err == nil || !strings.Contains(err.Error(), p.CacheStatus("c4")) {
		t.Fatalf("error %v: want one naming %s", err, p.CacheStatus("c4"))
	}
	want := []CachedPeer{{Name: "c2", ClusterID: 2,
		Synced:     map[string]bool{"nodes": true, "identities": true, "ip": false, "services": false},
		Entries:    map[string]int64{"nodes": 2, "identities": 0, "ip": 1, "services": 0},
		Connection: &schema.CachePeerState{Ready: true, Failures: 1, LastFailure: "peer c2 unreachable"}},
		{Name: "c4", ClusterID: 4, Synced: map[string]bool{"nodes": false, "identities": false, "ip": false, "services": false},
			Entries: map[string]int64{"nodes": 0, "identities": 0, "ip": 0, "services": 0}}}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("cached peers (-want +got):\n%s", d)
	}
}
