package server

import (
	"net/netip"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
	"github.com/clustermesh/clustermesh/services"
)

// desiredIPCache is the ipcache the datapath must hold: every pod IP of
// every cluster, and the addresses of every node (this node as host, the
// others as remote-node) where no pod claims the address.
func desiredIPCache(sn *state.Snapshot, cluster, node string) map[netip.Prefix]datapath.IPCacheEntry {
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
	return out
}

// desiredPeers is the routing peer set: every node of every cluster but
// this one, with an address to reach it.
func desiredPeers(sn *state.Snapshot, cluster, node string) map[string]datapath.Peer {
	out := map[string]datapath.Peer{}
	for _, n := range sn.Nodes("") {
		if n.Cluster == cluster && n.Name == node {
			continue
		}
		ip := n.Node.InternalIP(false)
		if !ip.IsValid() {
			ip = n.Node.InternalIP(true)
		}
		if !ip.IsValid() {
			ip = n.Node.Address(schema.AddressExternalIP, false)
		}
		if !ip.IsValid() {
			continue // nowhere to send its traffic
		}
		out[n.Cluster+"/"+n.Name] = datapath.Peer{
			Cluster: n.Cluster, Node: n.Name, NodeIP: ip,
			PodCIDRs: n.Node.PodCIDRs(), WireguardPubKey: n.Node.WireguardPubKey,
		}
	}
	return out
}

// desiredServices maps every frontend of every local Service to its
// selected backends: the local ones merged with those peers export for a
// global Service, by affinity (services.Merge).
func desiredServices(sn *state.Snapshot, cluster string) map[datapath.ServiceKey]datapath.Service {
	out := map[datapath.ServiceKey]datapath.Service{}
	owned := map[string]addrSet{}
	for _, ls := range sn.LocalServices() {
		if len(ls.Frontends) == 0 {
			continue
		}
		var remotes []schema.ClusterService
		if ls.Annotations.Global {
			for _, c := range sn.ServiceCopies(ls.Namespace, ls.Name) {
				if c.Cluster == cluster {
					continue
				}
				if _, ok := owned[c.Cluster]; !ok {
					owned[c.Cluster] = ownedAddrs(sn, c.Cluster)
				}
				remotes = append(remotes, owned[c.Cluster].filter(c.Service))
			}
		}
		selected := services.Merge(cluster, ls.Namespace, ls.Name, ls.Backends, ls.Annotations, remotes)
		for _, fe := range ls.Frontends {
			svc := datapath.Service{Namespace: ls.Namespace, Name: ls.Name}
			for _, t := range services.Targets(fe, selected) {
				svc.Backends = append(svc.Backends, datapath.Backend{Addr: t.Addr, Port: t.Port, Cluster: t.Cluster})
			}
			out[datapath.ServiceKey{Addr: fe.Addr, Port: fe.Port, Protocol: fe.Protocol}] = svc
		}
	}
	return out
}

// addrSet is where a peer's backends may be: its nodes' pod CIDRs and node
// addresses.
type addrSet struct {
	cidrs []netip.Prefix
	nodes map[netip.Addr]bool
}

func ownedAddrs(sn *state.Snapshot, cluster string) addrSet {
	s := addrSet{nodes: map[netip.Addr]bool{}}
	for _, n := range sn.Nodes(cluster) {
		s.cidrs = append(s.cidrs, n.Node.PodCIDRs()...)
		for _, a := range n.Node.IPAddresses {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				s.nodes[ip.Unmap()] = true
			}
		}
	}
	return s
}

func (s addrSet) contains(a netip.Addr) bool {
	if s.nodes[a] {
		return true
	}
	for _, p := range s.cidrs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// filter drops the backends of a peer's Service that are not the peer's
// own: a peer announcing another cluster's pods (or any address) as its
// backends would steer our clients there. The input is not modified.
func (s addrSet) filter(cs schema.ClusterService) schema.ClusterService {
	kept := make(map[string]schema.PortConfiguration, len(cs.Backends))
	for ip, pc := range cs.Backends {
		if a, err := netip.ParseAddr(ip); err == nil && s.contains(a.Unmap()) {
			kept[ip] = pc
		}
	}
	cs.Backends = kept
	return cs
}

// desiredPolicies is every local endpoint's policy by datapath ID.
func desiredPolicies(sn *state.Snapshot) map[uint16]datapath.EndpointPolicy {
	rows := sn.EndpointPolicies()
	out := make(map[uint16]datapath.EndpointPolicy, len(rows))
	for _, r := range rows {
		out[r.DatapathID] = r.Policy
	}
	return out
}

// desiredAttachments is every CNI attachment of a pod whose policy is
// computed (so whose datapath ID is known).
func desiredAttachments(sn *state.Snapshot) map[string]datapath.Attachment {
	ids := map[string]uint16{}
	for _, r := range sn.EndpointPolicies() {
		ids[r.Key] = r.DatapathID
	}
	out := map[string]datapath.Attachment{}
	for _, at := range sn.Attachments() {
		if id, ok := ids[at.Namespace+"/"+at.Pod]; ok {
			out[at.Key] = datapath.Attachment{IfName: at.HostIfName, IfIndex: at.HostIfIndex, EndpointID: id}
		}
	}
	return out
}
