//go:build linux

package bed

import (
	"fmt"
	"net/netip"
)

// The bed's address plan. IPv4 (every bed): the underlay 192.168.100.0/24,
// node i (0-based) of cluster id at .<10*id+i+1>; cluster pod CIDR
// 10.<id>.0.0/16, node pod CIDR 10.<id>.<i+1>.0/24; Services from envtest's
// 10.0.0.0/24. IPv6 (dual-stack beds, Options.DualStack, in addition): the
// underlay fd00:cb::/64, node at ::<10*id+i+1>; cluster pod CIDR
// fd00:10:<id>::/48, node pod CIDR fd00:10:<id>:<i+1>::/64; Services also
// from fd00:10:96::/112 (k8stest.DualStack).
var (
	// underlay is the nodes' shared IPv4 network on the fabric's bridge.
	underlay = netip.MustParsePrefix("192.168.100.0/24")
	// underlay6 is the nodes' IPv6 network on the same bridge (dual-stack
	// beds).
	underlay6 = netip.MustParsePrefix("fd00:cb::/64")
)

// nodeAddrs are the underlay addresses of node i of cluster id: IPv4, then
// IPv6 if dual.
func nodeAddrs(id uint32, i int, dual bool) []netip.Addr {
	host := byte(10*id) + byte(i) + 1
	a4 := underlay.Addr().As4()
	a4[3] = host
	out := []netip.Addr{netip.AddrFrom4(a4)}
	if dual {
		a6 := underlay6.Addr().As16()
		a6[15] = host
		out = append(out, netip.AddrFrom16(a6))
	}
	return out
}

// clusterPodCIDRs are the pod CIDRs of cluster id (`clustermesh install
// --pod-cidrs`): IPv4, then IPv6 if dual.
func clusterPodCIDRs(id uint32, dual bool) []netip.Prefix {
	out := []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", id))}
	if dual {
		out = append(out, netip.MustParsePrefix(fmt.Sprintf("fd00:10:%d::/48", id)))
	}
	return out
}

// nodePodCIDRs are the pod CIDRs of node i of cluster id (the Node's
// spec.podCIDRs, the host-local ranges): IPv4, then IPv6 if dual.
func nodePodCIDRs(id uint32, i int, dual bool) []netip.Prefix {
	out := []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", id, i+1))}
	if dual {
		out = append(out, netip.MustParsePrefix(fmt.Sprintf("fd00:10:%d:%d::/64", id, i+1)))
	}
	return out
}

// prefixOf is the address as a host prefix (/32 or /128), as the agent's
// ipcache lists a pod.
func prefixOf(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// family is "IPv4" or "IPv6", for messages.
func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
