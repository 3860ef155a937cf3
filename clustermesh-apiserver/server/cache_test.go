package server_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/clustermesh/clustermesh/clustermesh-apiserver/kvstoremesh"
	"github.com/clustermesh/clustermesh/clustermesh-apiserver/server"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

// With --cache, the clustermesh-apiserver caches the peers of its mesh
// configuration directory into its own etcd, where its agents' local user
// reads them, and serves the cache's per-peer status.
func TestCacheOfRemoteState(t *testing.T) {
	p := meshtest.StartPeer(t, "cluster2", 2)
	p.Put(t, p.Paths.Node("cluster2", "n1"),
		`{"Name":"n1","Cluster":"cluster2","IPAddresses":[{"Type":"InternalIP","IP":"192.168.2.10"}],"IPv4AllocCIDR":{"IP":"10.2.0.0","Mask":"//8AAA=="},"ClusterID":2}`)
	p.Synced()
	dir := t.TempDir()
	p.WriteMeshFile(t, dir)
	addr := "127.0.0.1:" + strconv.Itoa(kvtest.FreePort(t))
	b := newBed(t, func(c *server.Config) { c.Cache, c.MeshConfigDir, c.HealthAddr = true, dir, addr })
	cp := b.paths.Cache("cluster2")
	local := b.client(t, kvstore.LocalUser)
	eventually(t, "peer cached and readable by the local user", func() bool {
		resp, err := local.Etcd().Get(t.Context(), cp.Node("cluster2", "n1"))
		marker, merr := local.Etcd().Get(t.Context(), cp.Synced("cluster2", cp.NodesPrefix()))
		return err == nil && merr == nil && len(resp.Kvs) == 1 && len(marker.Kvs) == 1
	})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+server.CachePath, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st []kvstoremesh.PeerStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Name != "cluster2" || !st[0].Connected || !st[0].Published {
		t.Fatalf("GET %s = %+v, want cluster2 connected with its config published", server.CachePath, st)
	}
}
