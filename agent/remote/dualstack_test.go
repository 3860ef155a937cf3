package remote_test

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/claims"
	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// dualNode is a node of cluster with a pod CIDR and an address of each
// family given (empty strings are left out).
func dualNode(t *testing.T, cluster, name, cidr4, cidr6 string, addrs ...string) schema.Node {
	t.Helper()
	n := schema.Node{Name: name, Cluster: cluster, ClusterID: map[string]uint32{"cluster1": 1, "cluster2": 2, "cluster3": 3}[cluster]}
	if cidr4 != "" {
		n.IPv4AllocCIDR = schema.NewCIDR(netip.MustParsePrefix(cidr4))
	}
	if cidr6 != "" {
		n.IPv6AllocCIDR = schema.NewCIDR(netip.MustParsePrefix(cidr6))
	}
	for _, a := range addrs {
		n.IPAddresses = append(n.IPAddresses, schema.NodeAddress{Type: schema.AddressInternalIP, IP: net.ParseIP(a)})
	}
	return n
}

func marshal(t *testing.T, v interface{ Marshal() ([]byte, error) }) string {
	t.Helper()
	b, err := v.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A legitimate dual-stack peer next to its IPv6 attacks, through the real
// path: the peer's etcd, the validator, the agent's claims (the local
// cluster's dual-stack node, another peer's recorded CIDRs) and the
// agent's state. Its pods of both families (host entries under <ip> and
// <ip>/128 keys), its node and its backends of both families arrive; none
// of its IPv6 claims on the victim's pods, nodes or another peer's CIDRs
// does, whether connect recorded its pod CIDRs or not.
func TestDualStackPeerWithIPv6Attacks(t *testing.T) {
	for _, pinned := range []bool{true, false} {
		t.Run(fmt.Sprintf("pod CIDRs recorded %v", pinned), func(t *testing.T) {
			st, err := state.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Update(func(w *state.WriteTxn) error {
				return w.UpsertNode("cluster1", dualNode(t, "cluster1", "n1", "10.1.1.0/24", "fd00:1:0:1::/64", "192.168.1.10", "2001:db8:1::10"))
			}); err != nil {
				t.Fatal(err)
			}
			trust := remote.Trust{ClusterID: 2}
			if pinned {
				trust.PodCIDRs = []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16"), netip.MustParsePrefix("fd00:2::/48")}
			}
			cl := claims.New("cluster1", st)
			trusts := map[string]remote.Trust{"cluster2": trust,
				"cluster3": {ClusterID: 3, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.3.0.0/16"), netip.MustParsePrefix("fd00:3::/48")}}}
			cl.SetTrusts(func() map[string]remote.Trust { return trusts })

			p := meshtest.StartPeer(t, "cluster2", 2)
			paths := p.Env.Paths
			entry := func(ip, host string, id uint32) string {
				e := schema.IPEntry{IP: net.ParseIP(ip), ID: id, K8sNamespace: "default", K8sPodName: "rebel-base"}
				if host != "" {
					e.HostIP = net.ParseIP(host)
				}
				return marshal(t, e)
			}
			svc := schema.ClusterService{Cluster: "cluster2", Namespace: "default", Name: "rebel-base", Shared: true, ClusterID: 2,
				Frontends: map[string]schema.PortConfiguration{}, Backends: map[string]schema.PortConfiguration{}}
			for _, b := range []string{"10.2.1.5", "fd00:2:0:1::5", "2001:db8:2::10", "fd00:1:0:1::7", "2001:db8:1::10", "fd00:3:0:1::5"} {
				svc.Backends[b] = schema.PortConfiguration{"http": {Protocol: schema.ProtocolTCP, Port: 80}}
			}
			host128 := schema.IPEntry{IP: net.ParseIP("fd00:2:0:1::6"), Mask: net.CIDRMask(128, 128), HostIP: net.ParseIP("2001:db8:2::10"), ID: 131073,
				K8sNamespace: "default", K8sPodName: "rebel-base"}
			// Honest.
			p.Put(t, paths.Node("cluster2", "n1"), marshal(t, dualNode(t, "cluster2", "n1", "10.2.1.0/24", "fd00:2:0:1::/64", "192.168.2.10", "2001:db8:2::10")))
			p.Put(t, paths.Identity(131073), labels)
			p.Put(t, paths.IP(netip.MustParseAddr("10.2.1.5")), entry("10.2.1.5", "192.168.2.10", 131073))
			p.Put(t, paths.IP(netip.MustParseAddr("fd00:2:0:1::5")), entry("fd00:2:0:1::5", "192.168.2.10", 131073))
			p.Put(t, paths.IPCIDR(netip.MustParsePrefix("fd00:2:0:1::6/128")), marshal(t, host128))
			p.Put(t, paths.Service("cluster2", "default", "rebel-base"), marshal(t, svc))
			// IPv6 attacks.
			p.Put(t, paths.IP(netip.MustParseAddr("fd00:1:0:1::7")), entry("fd00:1:0:1::7", "2001:db8:2::10", 131073))                                                     // the victim's pod
			p.Put(t, paths.IP(netip.MustParseAddr("fd00:2:0:1::9")), entry("fd00:2:0:1::9", "2001:db8:1::10", 131073))                                                     // host: the victim's node
			p.Put(t, paths.IP(netip.MustParseAddr("fd00:2:0:1::a")), entry("fd00:2:0:1::a", "2001:db8:2::10", 65537))                                                      // the victim's identity
			p.Put(t, paths.IP(netip.MustParseAddr("::1")), entry("::1", "", 131073))                                                                                       // loopback
			p.Put(t, paths.IPCIDR(netip.MustParsePrefix("fd00:1::/48")), marshal(t, schema.IPEntry{IP: net.ParseIP("fd00:1::"), Mask: net.CIDRMask(48, 128), ID: 131073})) // the victim's range
			p.Put(t, paths.Node("cluster2", "evil1"), marshal(t, dualNode(t, "cluster2", "evil1", "", "fd00:1:0:1:8000::/65", "2001:db8:2::21")))                          // inside the victim's node's CIDR
			p.Put(t, paths.Node("cluster2", "evil3"), marshal(t, dualNode(t, "cluster2", "evil3", "", "fd00:3:0:1::/64", "2001:db8:2::23")))                               // cluster3's CIDR
			p.Put(t, paths.Node("cluster2", "evila"), marshal(t, dualNode(t, "cluster2", "evila", "", "fd00:2:0:7::/64", "2001:db8:1::10")))                               // the victim's node address
			p.Put(t, paths.Node("cluster2", "evilw"), marshal(t, dualNode(t, "cluster2", "evilw", "", "fd00::/16", "2001:db8:2::24")))                                     // a /16
			p.Synced()

			c, err := remote.New(remote.Config{Name: "cluster2", Client: p.Env.ClientConfig(t, kvstore.RemoteUser), Paths: paths,
				LocalName: "cluster1", LocalID: 1, MaxConnectedClusters: 255, Registry: remote.NewRegistry("cluster1", 1),
				Sink: st.RemoteSink(), Backoff: fast, Trust: trust, Claims: cl})
			if err != nil {
				t.Fatal(err)
			}
			meshtest.Go(t, c.Run)
			wantRejected := map[string]uint64{
				"ip: " + remote.ReasonOutsideNodeCIDR:   3,
				"ip: " + remote.ReasonBadHostIP:         1,
				"ip: " + remote.ReasonOutsideRange:      1,
				"nodes: " + remote.ReasonBadPodCIDR:     3,
				"nodes: " + remote.ReasonBadNodeAddress: 1,
				"services: " + remote.ReasonBadBackend:  1,
			}
			eventually(t, "peer ready", func() bool { return c.Status().Ready })
			if d := cmp.Diff(wantRejected, c.Status().Rejected); d != "" {
				t.Errorf("rejections (-want +got):\n%s", d)
			}

			sn := st.Snapshot()
			var got []string
			for _, r := range sn.IPCache() {
				got = append(got, fmt.Sprintf("ip %s/%v %v host %v", r.Cluster, r.Prefix, r.ID, r.HostIP))
			}
			for _, n := range sn.Nodes("") {
				got = append(got, fmt.Sprintf("node %s/%s %v", n.Cluster, n.Name, n.Node.PodCIDRs()))
			}
			for _, s := range sn.ServiceCopies("default", "rebel-base") {
				got = append(got, fmt.Sprintf("service %s %v", s.Cluster, slices.Sorted(maps.Keys(s.Service.Backends))))
			}
			sort.Strings(got)
			want := []string{
				"ip cluster2/10.2.1.5/32 131073 host 192.168.2.10",
				"ip cluster2/fd00:2:0:1::5/128 131073 host 192.168.2.10",
				"ip cluster2/fd00:2:0:1::6/128 131073 host 2001:db8:2::10",
				"node cluster1/n1 [10.1.1.0/24 fd00:1:0:1::/64]",
				"node cluster2/n1 [10.2.1.0/24 fd00:2:0:1::/64]",
				"service cluster2 [10.2.1.5 2001:db8:2::10 fd00:2:0:1::5]",
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("the agent's state (-want +got):\n%s", d)
			}
			for addr, want := range map[string]string{"fd00:2:0:1::5": "cluster2", "fd00:2:0:1::6": "cluster2", "fd00:1:0:1::7": "", "::1": ""} {
				r, ok := sn.LookupIP(netip.MustParseAddr(addr))
				if ok != (want != "") || ok && r.Cluster != want {
					t.Errorf("LookupIP(%s) = %+v, %v; want cluster %q", addr, r, ok, want)
				}
			}
		})
	}
}
