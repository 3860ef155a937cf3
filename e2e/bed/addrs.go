//go:build linux

package bed

import (
	"fmt"
	"net/netip"
)

// AddrFamily is the address families of a bed's clusters
// (Options.Family).
type AddrFamily int

const (
	// FamilyIPv4 is IPv4 only (the default).
	FamilyIPv4 AddrFamily = iota
	// FamilyDualStack is IPv4 and IPv6 (Options.DualStack).
	FamilyDualStack
	// FamilyIPv6 is IPv6 only: no IPv4 address on the underlay, in the
	// pod CIDRs, on pods or in the Service CIDR.
	FamilyIPv6
)

func (f AddrFamily) String() string {
	switch f {
	case FamilyIPv4:
		return "IPv4"
	case FamilyDualStack:
		return "dual-stack"
	case FamilyIPv6:
		return "IPv6"
	}
	return fmt.Sprintf("AddrFamily(%d)", int(f))
}

// has4 and has6 report whether the bed's clusters have IPv4, IPv6.
func (f AddrFamily) has4() bool { return f != FamilyIPv6 }
func (f AddrFamily) has6() bool { return f != FamilyIPv4 }

// The bed's address plan. IPv4 (IPv4 and dual-stack beds): the underlay
// 192.168.100.0/24, node i (0-based) of cluster id at .<10*id+i+1>;
// cluster pod CIDR 10.<id>.0.0/16, node pod CIDR 10.<id>.<i+1>.0/24;
// Services from envtest's 10.0.0.0/24. IPv6 (dual-stack beds,
// Options.DualStack, in addition; IPv6-only beds, FamilyIPv6, alone): the
// underlay fd00:cb::/64, node at ::<10*id+i+1>; cluster pod CIDR
// fd00:10:<id>::/48, node pod CIDR fd00:10:<id>:<i+1>::/64; Services from
// fd00:10:96::/112 (k8stest.DualStack, k8stest.IPv6Only). Lists are in
// that order: IPv4 first, when there is one.
var (
	// underlay is the nodes' shared IPv4 network on the fabric's bridge.
	underlay = netip.MustParsePrefix("192.168.100.0/24")
	// underlay6 is the nodes' IPv6 network on the same bridge (dual-stack
	// and IPv6-only beds).
	underlay6 = netip.MustParsePrefix("fd00:cb::/64")
)

// nodeAddrs are the underlay addresses of node i of cluster id: IPv4,
// then IPv6, of the families of fam.
func nodeAddrs(id uint32, i int, fam AddrFamily) []netip.Addr {
	host := byte(10*id) + byte(i) + 1
	var out []netip.Addr
	if fam.has4() {
		out = append(out, underlayAddr(underlay, host))
	}
	if fam.has6() {
		out = append(out, underlayAddr(underlay6, host))
	}
	return out
}

// underlayAddr is the address host (its last byte) of the underlay lan.
func underlayAddr(lan netip.Prefix, host byte) netip.Addr {
	if lan.Addr().Is4() {
		a := lan.Addr().As4()
		a[3] = host
		return netip.AddrFrom4(a)
	}
	a := lan.Addr().As16()
	a[15] = host
	return netip.AddrFrom16(a)
}

// clusterPodCIDRs are the pod CIDRs of cluster id (`clustermesh install
// --pod-cidrs`): IPv4, then IPv6, of the families of fam.
func clusterPodCIDRs(id uint32, fam AddrFamily) []netip.Prefix {
	var out []netip.Prefix
	if fam.has4() {
		out = append(out, netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", id)))
	}
	if fam.has6() {
		out = append(out, netip.MustParsePrefix(fmt.Sprintf("fd00:10:%d::/48", id)))
	}
	return out
}

// nodePodCIDRs are the pod CIDRs of node i of cluster id (the Node's
// spec.podCIDRs, the host-local ranges): IPv4, then IPv6, of the families
// of fam.
func nodePodCIDRs(id uint32, i int, fam AddrFamily) []netip.Prefix {
	var out []netip.Prefix
	if fam.has4() {
		out = append(out, netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", id, i+1)))
	}
	if fam.has6() {
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
