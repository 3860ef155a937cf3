package kvstoremesh_test

import (
	"encoding/base64"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// The cache checks a peer against the rest of the mesh as an agent does:
// a node claiming a pod CIDR, an address or a WireGuard key of the local
// cluster's nodes, or a pod CIDR of another peer's accepted node, is
// refused and counted; the honest nodes are cached.
func TestCacheChecksPeersAgainstTheMesh(t *testing.T) {
	l := startLocal(t)
	localKey := base64.StdEncoding.EncodeToString(slices.Repeat([]byte{7}, 32))
	cfg := l.config()
	cfg.LocalNodes = func() []schema.Node {
		return []schema.Node{{Name: "l1", Cluster: "cluster1", ClusterID: 1, WireguardPubKey: localKey,
			IPAddresses:   []schema.NodeAddress{{Type: schema.AddressInternalIP, IP: net.ParseIP("192.168.1.10")}},
			IPv4AllocCIDR: &schema.CIDR{Prefix: netip.MustParsePrefix("10.1.0.0/16")}}}
	}
	p2 := meshtest.StartPeer(t, "cluster2", 2)
	nodes := map[string]string{
		"n1":          node2,
		"local-cidr":  strings.NewReplacer(`"n1"`, `"local-cidr"`, "192.168.2.10", "192.168.2.11", `"IP":"10.2.0.0","Mask":"//8AAA=="`, `"IP":"10.1.5.0","Mask":"////AA=="`).Replace(node2),
		"local-addr":  strings.NewReplacer(`"n1"`, `"local-addr"`, "192.168.2.10", "192.168.1.10", `"IP":"10.2.0.0","Mask":"//8AAA=="`, `"IP":"10.4.0.0","Mask":"//8AAA=="`).Replace(node2),
		"local-wgkey": strings.NewReplacer(`"n1"`, `"local-wgkey"`, "192.168.2.10", "192.168.2.12", `"IP":"10.2.0.0","Mask":"//8AAA=="`, `"IP":"10.5.0.0","Mask":"//8AAA=="`, `"ClusterID":2`, `"ClusterID":2,"WireguardPubKey":"`+localKey+`"`).Replace(node2),
	}
	for name, v := range nodes {
		p2.Put(t, p2.Paths.Node("cluster2", name), v)
	}
	p2.Synced()
	p2.WriteMeshFile(t, l.dir)
	c, _ := runCache(t, cfg)
	eventually(t, "cluster2 cached", func() bool { return cacheSynced(c, "cluster2") })

	// cluster3 claims a pod CIDR inside cluster2's accepted node.
	p3 := meshtest.StartPeer(t, "cluster3", 3)
	p3.Put(t, p3.Paths.Node("cluster3", "m1"), strings.NewReplacer(`"IP":"10.3.0.0","Mask":"//8AAA=="`, `"IP":"10.2.9.0","Mask":"////AA=="`).Replace(node3))
	p3.Synced()
	p3.WriteMeshFile(t, l.dir)
	eventually(t, "cluster3 cached", func() bool { return cacheSynced(c, "cluster3") })

	cp := l.env.Paths.Cache("cluster2")
	if d := cmp.Diff([]string{cp.Node("cluster2", "n1")}, l.keys(t, l.env.Paths.CacheRoot())); d != "" {
		t.Fatalf("cached nodes (-want +got):\n%s", d)
	}
	st := c.Status()
	if d := cmp.Diff(map[string]uint64{
		"nodes: " + remote.ReasonBadPodCIDR:      1,
		"nodes: " + remote.ReasonBadNodeAddress:  1,
		"nodes: " + remote.ReasonBadWireGuardKey: 1,
	}, st[0].Rejected); d != "" {
		t.Errorf("cluster2's rejections (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]uint64{"nodes: " + remote.ReasonBadPodCIDR: 1}, st[1].Rejected); d != "" {
		t.Errorf("cluster3's rejections (-want +got):\n%s", d)
	}
}
