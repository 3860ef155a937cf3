package tunnel

import (
	"net/netip"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/datapath"
)

func samplePeers() map[string]datapath.Peer {
	return map[string]datapath.Peer{
		"c2/n1": {Cluster: "c2", Node: "n1", NodeIP: netip.MustParseAddr("192.168.1.2"), PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24"), netip.MustParsePrefix("fd00:2::/64")}, WireguardPubKey: "k1"},
		"c3/n1": {Cluster: "c3", Node: "n1", NodeIP: netip.MustParseAddr("fd00::3"), PodCIDRs: []netip.Prefix{}, WireguardPubKey: "k2"},
		"c3/n2": {Cluster: "c3", Node: "n2", NodeIP: netip.MustParseAddr("192.168.2.3"), WireguardPubKey: "k3"},
	}
}

func cmpNetip() cmp.Options {
	return cmp.Options{
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	}
}
