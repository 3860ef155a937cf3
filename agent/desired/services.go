package desired

import (
	"net/netip"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/kvstore/schema"
	"github.com/clustermesh/clustermesh/services"
)

// Services maps every frontend of every local Service to its selected
// backends: the local ones merged with those peers export for a global
// Service, by affinity (services.Merge). Two Services claiming one
// frontend: the one last in namespace/name order has it.
func Services(sn *state.Snapshot, cluster string) map[datapath.ServiceKey]datapath.Service {
	out := map[datapath.ServiceKey]datapath.Service{}
	owned := map[string]addrSet{}
	for _, ls := range sn.LocalServices() {
		for k, svc := range serviceEntries(sn, cluster, ls, owned) {
			out[k] = svc
		}
	}
	return out
}

func frontendKey(fe services.Frontend) datapath.ServiceKey {
	return datapath.ServiceKey{Addr: fe.Addr, Port: fe.Port, Protocol: fe.Protocol}
}

// serviceEntries returns the desired entry of each frontend of the local
// Service ls; owned caches the peers' address sets.
func serviceEntries(sn *state.Snapshot, cluster string, ls state.LocalService, owned map[string]addrSet) map[datapath.ServiceKey]datapath.Service {
	var remotes []schema.ClusterService
	if ls.Annotations.Global && len(ls.Frontends) > 0 {
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
	out := make(map[datapath.ServiceKey]datapath.Service, len(ls.Frontends))
	for _, fe := range ls.Frontends {
		svc := datapath.Service{Namespace: ls.Namespace, Name: ls.Name}
		for _, t := range services.Targets(fe, selected) {
			svc.Backends = append(svc.Backends, datapath.Backend{Addr: t.Addr, Port: t.Port, Cluster: t.Cluster})
		}
		out[frontendKey(fe)] = svc
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

// RemoteCopies returns the peers' copies of the global Service ls that
// Services merges (each with only the backends its cluster owns), with
// the number of backends dropped from each as not owned, by cluster: the
// inputs of services.Merge, for explaining a selection (GET
// /v1/services/detail).
func RemoteCopies(sn *state.Snapshot, cluster string, ls state.LocalService) ([]schema.ClusterService, map[string]int) {
	if !ls.Annotations.Global || len(ls.Frontends) == 0 {
		return nil, nil
	}
	var out []schema.ClusterService
	dropped := map[string]int{}
	for _, c := range sn.ServiceCopies(ls.Namespace, ls.Name) {
		if c.Cluster == cluster {
			continue
		}
		kept := ownedAddrs(sn, c.Cluster).filter(c.Service)
		if n := len(c.Service.Backends) - len(kept.Backends); n > 0 {
			dropped[c.Cluster] = n
		}
		out = append(out, kept)
	}
	return out, dropped
}
