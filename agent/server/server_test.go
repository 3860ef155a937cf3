package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/server"
	"github.com/clustermesh/clustermesh/internal/testutil"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, what, cond)
}

// apiGet queries the agent's local API over its unix socket.
func apiGet(t *testing.T, socket, path string, into any) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://agent"+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", path, resp.Status, b)
	}
	if s, ok := into.(*string); ok {
		*s = string(b)
		return
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}

// A peer configured in the mesh directory is connected, validated, merged
// into the state, reconciled into the datapath and shown by the local API;
// removing its file drains it everywhere.
func TestAgentServesPeerState(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{Cluster: "cluster2"})
	admin := env.Connect(t, kvstore.AdminUser).Etcd()
	p := env.Paths
	kvs := map[string]string{
		p.ClusterConfig("cluster2"):      `{"id":2,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}`,
		p.Node("cluster2", "n1"):         `{"Name":"n1","Cluster":"cluster2","IPv4AllocCIDR":{"IP":"10.2.1.0","Mask":"////AA=="},"ClusterID":2}`,
		p.Identity(131073):               "k8s:app=rebel-base;k8s:io.cilium.k8s.policy.cluster=cluster2;k8s:io.kubernetes.pod.namespace=default;",
		p.Identity(65537):                "k8s:app=spoof;k8s:io.cilium.k8s.policy.cluster=cluster1;",
		p.IPDefaultPrefix() + "10.2.1.5": `{"IP":"10.2.1.5","Mask":null,"HostIP":"192.168.2.10","ID":131073,"Key":0,"Metadata":""}`,
	}
	for _, prefix := range []string{p.NodesPrefix(), p.IdentitiesPrefix(), p.IPPrefix(), p.ServicesPrefix()} {
		kvs[p.Synced("cluster2", prefix)] = "2026-11-22T00:00:00Z"
	}
	for k, v := range kvs {
		if _, err := admin.Put(t.Context(), k, v); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	meshDir := filepath.Join(dir, "mesh")
	if err := os.Mkdir(meshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := yaml.Marshal(env.ClientConfig(t, kvstore.RemoteUser))
	if err := os.WriteFile(filepath.Join(meshDir, "cluster2"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "agent.sock")
	a, err := server.New(server.Config{NodeName: "node1", ClusterName: "cluster1", ClusterID: 1, MeshConfigDir: meshDir, APISocket: socket}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	eventually(t, "peer ready in /v1/status", func() bool {
		if _, err := os.Stat(socket); err != nil {
			return false
		}
		var st server.StatusResponse
		apiGet(t, socket, "/v1/status", &st)
		return len(st.Peers) == 1 && st.Peers[0].Ready
	})
	var ipc []server.IPCacheEntry
	apiGet(t, socket, "/v1/ipcache", &ipc)
	want := []server.IPCacheEntry{{Prefix: "10.2.1.5/32", Identity: 131073, HostIP: "192.168.2.10", Cluster: "cluster2"}}
	if diff := cmp.Diff(want, ipc); diff != "" {
		t.Fatalf("/v1/ipcache (-want +got):\n%s", diff)
	}
	var ids []server.IdentityEntry
	apiGet(t, socket, "/v1/identities", &ids)
	if len(ids) != 1 || ids[0].ID != 131073 {
		t.Fatalf("/v1/identities = %+v, want only 131073 (65537 is cluster1's range)", ids)
	}
	var metrics string
	apiGet(t, socket, "/metrics", &metrics)
	if !strings.Contains(metrics, `clustermesh_agent_remote_rejected_total{cluster="cluster2",kind="identities",reason="identity outside the peer's range"} 1`) {
		t.Fatalf("/metrics does not count the spoofed identity:\n%s", metrics)
	}
	pfx := netip.MustParsePrefix("10.2.1.5/32")
	eventually(t, "ipcache reconciled into the datapath", func() bool {
		got, _ := a.Datapath.IPCache().List(t.Context())
		return cmp.Equal(map[netip.Prefix]datapath.IPCacheEntry{pfx: {Identity: 131073, HostIP: netip.MustParseAddr("192.168.2.10"), Cluster: "cluster2"}}, got,
			cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}))
	})

	if err := os.Remove(filepath.Join(meshDir, "cluster2")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "peer drained from the API and the datapath", func() bool {
		var ipc []server.IPCacheEntry
		apiGet(t, socket, "/v1/ipcache", &ipc)
		got, _ := a.Datapath.IPCache().List(t.Context())
		return len(ipc) == 0 && len(got) == 0
	})
}

func TestConfigErrorsNameTheFlags(t *testing.T) {
	_, err := server.New(server.Config{ClusterName: "x", ClusterID: 1, Datapath: "bpf"}, nil)
	for _, want := range []string{"--node-name", "--mesh-config-dir", "--datapath", "--api-socket"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
