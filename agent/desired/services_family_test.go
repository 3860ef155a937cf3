package desired

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/kvstore/schema"
	"github.com/clustermesh/clustermesh/services"
)

// A dual-stack global Service imported from a dual-stack peer: the peer's
// backends are kept only inside its nodes' pod CIDRs of their family or
// at its nodes' addresses (IPv4 and IPv6 alike: the victim's own pod IPs
// and addresses of nobody are left out), and each cluster IP gets only
// the backends of its own family. ServicesAt agrees with Services.
func TestServicesDualStackPeer(t *testing.T) {
	const cluster = "cluster1"
	st, err := state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	http := map[string]schema.L4Addr{"http": {Protocol: schema.ProtocolTCP, Port: 8080}}
	local := func(ip string) services.Backend {
		return services.Backend{Addr: netip.MustParseAddr(ip), Cluster: cluster, Ports: http, Ready: true}
	}
	fe := func(ip string) services.Frontend {
		return services.Frontend{Addr: netip.MustParseAddr(ip), Port: 80, Protocol: schema.ProtocolTCP, Name: "http"}
	}
	backends := map[string]schema.PortConfiguration{}
	for _, ip := range []string{
		"10.2.1.5", "fd00:2:0:1::5", // in the peer's node's pod CIDRs
		"192.168.2.10", "2001:db8:2::10", // the peer's node's addresses
		"10.1.1.7", "fd00:1:0:1::7", // the victim's own pods
		"10.2.2.5", "fd00:2:0:2::5", // in no node's pod CIDR
		"192.168.9.9", "2001:db8:9::9", // anybody's
	} {
		backends[ip] = schema.PortConfiguration{"http": {Protocol: schema.ProtocolTCP, Port: 8080}}
	}
	if err := st.Update(func(w *state.WriteTxn) error {
		if err := w.UpsertNode(cluster, schema.Node{Name: "n1", Cluster: cluster,
			IPAddresses:   []schema.NodeAddress{{Type: schema.AddressInternalIP, IP: net.ParseIP("192.168.1.10")}, {Type: schema.AddressInternalIP, IP: net.ParseIP("2001:db8:1::10")}},
			IPv4AllocCIDR: schema.NewCIDR(netip.MustParsePrefix("10.1.1.0/24")), IPv6AllocCIDR: schema.NewCIDR(netip.MustParsePrefix("fd00:1:0:1::/64"))}); err != nil {
			return err
		}
		if err := w.UpsertNode("cluster2", schema.Node{Name: "n1", Cluster: "cluster2",
			IPAddresses:   []schema.NodeAddress{{Type: schema.AddressInternalIP, IP: net.ParseIP("192.168.2.10")}, {Type: schema.AddressInternalIP, IP: net.ParseIP("2001:db8:2::10")}},
			IPv4AllocCIDR: schema.NewCIDR(netip.MustParsePrefix("10.2.1.0/24")), IPv6AllocCIDR: schema.NewCIDR(netip.MustParsePrefix("fd00:2:0:1::/64"))}); err != nil {
			return err
		}
		if err := w.UpsertService("cluster2", schema.ClusterService{Cluster: "cluster2", Namespace: "default", Name: "rebel-base",
			Shared: true, ClusterID: 2, Backends: backends}); err != nil {
			return err
		}
		return w.UpsertLocalService(state.LocalService{Namespace: "default", Name: "rebel-base",
			Annotations: services.Annotations{Global: true, Shared: true, Affinity: services.AffinityNone},
			Frontends:   []services.Frontend{fe("10.96.0.10"), fe("fd00::a")},
			Backends:    []services.Backend{local("10.1.1.5"), local("fd00:1:0:1::5")}})
	}); err != nil {
		t.Fatal(err)
	}
	target := func(cluster, ip string) datapath.Backend {
		return datapath.Backend{Addr: netip.MustParseAddr(ip), Port: 8080, Cluster: cluster}
	}
	want := map[datapath.ServiceKey]datapath.Service{
		frontendKey(fe("10.96.0.10")): {Namespace: "default", Name: "rebel-base", Backends: []datapath.Backend{
			target(cluster, "10.1.1.5"), target("cluster2", "10.2.1.5"), target("cluster2", "192.168.2.10")}},
		frontendKey(fe("fd00::a")): {Namespace: "default", Name: "rebel-base", Backends: []datapath.Backend{
			target(cluster, "fd00:1:0:1::5"), target("cluster2", "2001:db8:2::10"), target("cluster2", "fd00:2:0:1::5")}},
	}
	sn := st.Snapshot()
	addrCmp := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	if d := cmp.Diff(want, Services(sn, cluster), addrCmp); d != "" {
		t.Errorf("Services (-want +got):\n%s", d)
	}
	for k, w := range want {
		got, ok := ServicesAt(sn, cluster, k)
		if d := cmp.Diff(w, got, addrCmp); !ok || d != "" {
			t.Errorf("ServicesAt(%v): found %v (-want +got):\n%s", k, ok, d)
		}
	}
}

// The peer's backend ownership filter holds each family to the peer's
// nodes of that family: pod CIDRs and node addresses, IPv4-mapped
// addresses unmapped, zoned ones never.
func TestAddrSetFamilies(t *testing.T) {
	s := addrSet{
		cidrs: []netip.Prefix{netip.MustParsePrefix("10.2.1.0/24"), netip.MustParsePrefix("fd00:2:0:1::/64")},
		nodes: map[netip.Addr]bool{netip.MustParseAddr("192.168.2.10"): true, netip.MustParseAddr("2001:db8:2::10"): true},
	}
	for ip, want := range map[string]bool{
		"10.2.1.5": true, "fd00:2:0:1::5": true, "192.168.2.10": true, "2001:db8:2::10": true, "::ffff:10.2.1.5": true,
		"10.2.2.5": false, "fd00:2:0:2::5": false, "fd00:2:0:1::5%eth0": false, "2001:db8:2::11": false, "::a02:105": false,
	} {
		cs := s.filter(schema.ClusterService{Backends: map[string]schema.PortConfiguration{ip: {}}})
		if _, kept := cs.Backends[ip]; kept != want {
			t.Errorf("backend %s kept: %v, want %v", ip, kept, want)
		}
	}
}
