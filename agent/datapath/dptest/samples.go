package dptest

import (
	"fmt"
	"net/netip"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/identity"
)

// The samples stay within what every implementation holds (frontends and
// tunnel endpoints of both families, TCP and UDP services, masked
// prefixes); what one implementation refuses is tested in its own package.

func ipcacheCase() tableCase[netip.Prefix, datapath.IPCacheEntry] {
	return tableCase[netip.Prefix, datapath.IPCacheEntry]{
		table: func(dp datapath.Datapath) datapath.Table[netip.Prefix, datapath.IPCacheEntry] { return dp.IPCache() },
		k1:    netip.MustParsePrefix("10.1.0.0/16"),
		k2:    netip.MustParsePrefix("fd00:10::/64"),
		v1:    datapath.IPCacheEntry{Identity: 0x010203, HostIP: netip.MustParseAddr("192.168.0.2"), Cluster: "cluster-1"},
		v2:    datapath.IPCacheEntry{Identity: 4000, Cluster: ""},
		v3:    datapath.IPCacheEntry{Identity: 5000, HostIP: netip.MustParseAddr("fd00:ffff::3"), Cluster: "cluster-2"},
	}
}

// ManyBackends returns n backends of cluster (a value larger than a small
// buffer).
func ManyBackends(n int, cluster string) []datapath.Backend {
	out := make([]datapath.Backend, n)
	for i := range out {
		out[i] = datapath.Backend{Addr: netip.AddrFrom4([4]byte{10, 2, byte(i / 250), byte(1 + i%250)}), Port: 8080, Cluster: cluster}
	}
	return out
}

func servicesCase() tableCase[datapath.ServiceKey, datapath.Service] {
	return tableCase[datapath.ServiceKey, datapath.Service]{
		table: func(dp datapath.Datapath) datapath.Table[datapath.ServiceKey, datapath.Service] { return dp.Services() },
		k1:    datapath.ServiceKey{Addr: netip.MustParseAddr("10.96.0.10"), Port: 53, Protocol: "UDP"},
		k2:    datapath.ServiceKey{Addr: netip.MustParseAddr("fd00:96::1"), Port: 443, Protocol: "TCP"},
		v1: datapath.Service{Namespace: "kube-system", Name: "kube-dns", Backends: []datapath.Backend{
			{Addr: netip.MustParseAddr("10.0.2.5"), Port: 53, Cluster: "cluster-2"},
			{Addr: netip.MustParseAddr("10.0.1.5"), Port: 53},
		}},
		v2: datapath.Service{Namespace: "kube-system", Name: "kube-dns", Backends: ManyBackends(300, "cluster-1")},
		v3: datapath.Service{Namespace: "default", Name: "kubernetes"}, // nil Backends
	}
}

// ManyRules returns n distinct rules in no particular order.
func ManyRules(n int) []datapath.PolicyRule {
	out := make([]datapath.PolicyRule, n)
	for i := range out {
		out[i] = datapath.PolicyRule{Identity: identity.NumericIdentity(1000 + (n-i)%37), Ingress: i%2 == 0, Proto: 6, Port: uint16(1024 + i)}
		if i%5 == 0 {
			out[i].EndPort = out[i].Port + 100
		}
	}
	return out
}

func policiesCase() tableCase[uint16, datapath.EndpointPolicy] {
	return tableCase[uint16, datapath.EndpointPolicy]{
		table: func(dp datapath.Datapath) datapath.Table[uint16, datapath.EndpointPolicy] { return dp.Policies() },
		k1:    7,
		k2:    4095,
		// Rules as a policy compiler may hand them over: unsorted, with a
		// duplicate, a port without protocol, a range, and a deny covering
		// an allow. They come back as the implementation keeps them
		// (Impl.Kept).
		v1: datapath.EndpointPolicy{Identity: 1000, EnforceIngress: true, Rules: []datapath.PolicyRule{
			{Identity: 2000, Ingress: true, Proto: 6, Port: 8080},
			{Identity: 0, Ingress: true, Port: 53},
			{Identity: 3000, Proto: 17, Port: 1000, EndPort: 2000},
			{Identity: 2000, Ingress: true, Proto: 6, Deny: true},
			{Identity: 2000, Ingress: true, Proto: 6, Port: 8080},
		}},
		v2: datapath.EndpointPolicy{Identity: 1000, EnforceIngress: true, EnforceEgress: true, Rules: ManyRules(300)},
		v3: datapath.EndpointPolicy{Identity: 1001, EnforceEgress: true}, // nil Rules: deny all egress
	}
}

func peersCase() tableCase[string, datapath.Peer] {
	peer := func(cluster, node string, ip string, cidrs ...string) datapath.Peer {
		p := datapath.Peer{Cluster: cluster, Node: node, NodeIP: netip.MustParseAddr(ip), WireguardPubKey: fmt.Sprintf("key-of-%s-%s", cluster, node)}
		for _, c := range cidrs {
			p.PodCIDRs = append(p.PodCIDRs, netip.MustParsePrefix(c))
		}
		return p
	}
	return tableCase[string, datapath.Peer]{
		table: func(dp datapath.Datapath) datapath.Table[string, datapath.Peer] { return dp.Peers() },
		k1:    "cluster-2/node-1",
		k2:    "cluster-3/node-1",
		v1:    peer("cluster-2", "node-1", "192.168.1.2", "10.2.0.0/24"),
		v2:    peer("cluster-2", "node-1", "192.168.1.3", "10.2.0.0/24", "fd00:2::/64"),
		v3:    peer("cluster-3", "node-1", "192.168.2.2"),
	}
}

// attachmentsCase attaches the interfaces *ifs (set by the kernel).
func attachmentsCase(ifs *[2]Interface) tableCase[int, datapath.Attachment] {
	return tableCase[int, datapath.Attachment]{
		table: func(dp datapath.Datapath) datapath.Table[int, datapath.Attachment] { return dp.Attachments() },
		samples: func(c *tableCase[int, datapath.Attachment]) {
			c.k1, c.k2 = ifs[0].Index, ifs[1].Index
			c.v1 = datapath.Attachment{IfName: ifs[0].Name, EndpointID: 1}
			c.v2 = datapath.Attachment{IfName: ifs[0].Name, EndpointID: 4095}
			c.v3 = datapath.Attachment{IfName: ifs[1].Name, EndpointID: 2}
		},
	}
}

func cidrsCase() tableCase[netip.Prefix, identity.NumericIdentity] {
	return tableCase[netip.Prefix, identity.NumericIdentity]{
		table: func(dp datapath.Datapath) datapath.Table[netip.Prefix, identity.NumericIdentity] {
			return dp.CIDRIdentities()
		},
		k1: netip.MustParsePrefix("10.0.0.0/8"),
		k2: netip.MustParsePrefix("fd00:1::/64"),
		v1: 1 << 24,
		v2: 1<<24 + 1,
		v3: 1<<24 + 2,
	}
}
