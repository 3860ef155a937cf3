package desired

import (
	"net/netip"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/identity"
)

// IPCache is the ipcache the datapath must hold: every pod IP of every
// cluster, the addresses of every node (this node as host, the others as
// remote-node) where no pod claims the address, and the CIDR identities of
// the policies where nothing else claims the prefix.
func IPCache(sn *state.Snapshot, cluster, node string) map[netip.Prefix]datapath.IPCacheEntry {
	rows := sn.IPCache()
	out := make(map[netip.Prefix]datapath.IPCacheEntry, len(rows))
	for _, r := range rows {
		out[r.Prefix] = datapath.IPCacheEntry{Identity: r.ID, HostIP: r.HostIP, Cluster: r.Cluster}
	}
	// This node's pods are known to the CNI plugin before the kubelet
	// reports their IPs.
	for _, at := range sn.Attachments() {
		id := identity.ReservedInit
		if ep, ok := sn.Endpoint(at.Namespace, at.Pod); ok {
			id = ep.ID
		}
		for _, ip := range at.IPs {
			p := netip.PrefixFrom(ip, ip.BitLen())
			if _, taken := out[p]; !taken {
				out[p] = datapath.IPCacheEntry{Identity: id, Cluster: cluster}
			}
		}
	}
	for _, n := range sn.Nodes("") {
		id := identity.ReservedRemoteNode
		if n.Cluster == cluster && n.Name == node {
			id = identity.ReservedHost
		}
		for _, a := range n.Node.IPAddresses {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			p := netip.PrefixFrom(ip, ip.BitLen())
			if _, taken := out[p]; !taken {
				out[p] = datapath.IPCacheEntry{Identity: id, HostIP: ip, Cluster: n.Cluster}
			}
		}
	}
	for _, r := range sn.CIDRIdentities() {
		if _, taken := out[r.Prefix]; !taken {
			out[r.Prefix] = datapath.IPCacheEntry{Identity: r.ID, Cluster: cluster}
		}
	}
	return out
}
