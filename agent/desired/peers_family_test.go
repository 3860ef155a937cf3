package desired

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// A routing peer of either family: its endpoint is its first InternalIP
// (IPv4 before IPv6), else its first ExternalIP (IPv4 before IPv6), and
// its pod CIDRs are those of both families. A node with no address is no
// peer.
func TestPeersFamilies(t *testing.T) {
	addr := func(typ, ip string) schema.NodeAddress { return schema.NodeAddress{Type: typ, IP: net.ParseIP(ip)} }
	in, ex := schema.AddressInternalIP, schema.AddressExternalIP
	for _, tc := range []struct {
		name  string
		addrs []schema.NodeAddress
		want  string // the endpoint, "" for no peer
	}{
		{"dual-stack", []schema.NodeAddress{addr(in, "2001:db8:2::10"), addr(in, "192.168.2.10")}, "192.168.2.10"},
		{"IPv6 internal", []schema.NodeAddress{addr(ex, "203.0.113.2"), addr(in, "2001:db8:2::10")}, "2001:db8:2::10"},
		{"IPv4 external", []schema.NodeAddress{addr(ex, "2001:db8:ff::2"), addr(ex, "203.0.113.2")}, "203.0.113.2"},
		{"IPv6 external only", []schema.NodeAddress{addr(ex, "2001:db8:ff::2")}, "2001:db8:ff::2"},
		{"IPv4-mapped internal", []schema.NodeAddress{addr(in, "::ffff:192.168.2.10")}, "192.168.2.10"},
		{"no address", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := state.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			n := schema.Node{Name: "n1", Cluster: "cluster2", IPAddresses: tc.addrs, WireguardPubKey: "k",
				IPv4AllocCIDR: schema.NewCIDR(netip.MustParsePrefix("10.2.1.0/24")), IPv6AllocCIDR: schema.NewCIDR(netip.MustParsePrefix("fd00:2:0:1::/64"))}
			if err := st.Update(func(w *state.WriteTxn) error { return w.UpsertNode("cluster2", n) }); err != nil {
				t.Fatal(err)
			}
			want := map[string]datapath.Peer{}
			if tc.want != "" {
				want["cluster2/n1"] = datapath.Peer{Cluster: "cluster2", Node: "n1", NodeIP: netip.MustParseAddr(tc.want),
					PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.2.1.0/24"), netip.MustParsePrefix("fd00:2:0:1::/64")}, WireguardPubKey: "k"}
			}
			opts := cmp.Options{cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })}
			if d := cmp.Diff(want, Peers(st.Snapshot(), "cluster1", "n0"), opts); d != "" {
				t.Errorf("Peers (-want +got):\n%s", d)
			}
			p, ok := PeerAt(st.Snapshot(), "cluster1", "n0", "cluster2/n1")
			if d := cmp.Diff(want["cluster2/n1"], p, opts); ok != (tc.want != "") || d != "" {
				t.Errorf("PeerAt: found %v (-want +got):\n%s", ok, d)
			}
		})
	}
}
