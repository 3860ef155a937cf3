package services

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Backend is one backend address of a Service, local or remote.
type Backend struct {
	// Addr is the backend's IP address.
	Addr netip.Addr
	// Cluster is the name of the cluster the backend runs in.
	Cluster string
	// Ports maps a port name ("" for an unnamed port) to its protocol and
	// port.
	Ports map[string]schema.L4Addr
	// Ready is the EndpointSlice Ready condition; always true for remote
	// backends (only ready or serving backends are exported).
	Ready bool
	// Terminating is the EndpointSlice Terminating condition; always false
	// for remote backends (the schema cannot say).
	Terminating bool
}

// Merge returns the backends that new connections to the Service
// namespace/name of cluster localCluster may use, given its local backends
// (from its EndpointSlices), its annotations and the ClusterServices that
// peers export. The result is sorted by cluster, then address; it is nil
// when no backend is selected.
//
//   - Local backends that are not ready, or are terminating, are left out.
//     Their Cluster is set to localCluster and addresses are unmapped
//     (IPv4-mapped IPv6 becomes IPv4); an invalid (zero) address is
//     skipped.
//   - When ann is not global, only local backends are used. The local
//     Shared flag does not matter: a global Service that is not shared
//     still imports, as in Cilium.
//   - A remote ClusterService is used only when it is Shared, has the same
//     namespace and name, and comes from a named cluster other than
//     localCluster. When a cluster appears more than once, its first
//     ClusterService in remotes is used and the others are ignored. Its
//     backends are those of RemoteBackends.
//   - An address is used once: a local address (ready or not) hides the
//     same address from every peer, the first local one wins among local
//     duplicates, and among peers the cluster first by name wins.
//   - AffinityLocal uses remote backends only when no local one is left;
//     AffinityRemote uses local backends only when no remote one is left;
//     AffinityNone (and any unknown value) uses both. Affinity is decided
//     per address family, as a frontend gets only backends of its own
//     family (Targets): AffinityLocal keeps the remote IPv6 backends when
//     no local IPv6 one is left, even if local IPv4 ones are, so that the
//     IPv6 cluster IP of a dual-stack Service is not left without
//     backends; AffinityRemote likewise.
//
// Inputs are not modified and the result does not alias them.
func Merge(localCluster, namespace, name string, local []Backend, ann Annotations, remotes []schema.ClusterService) []Backend {
	seen := make(map[netip.Addr]struct{}, len(local))
	var locals []Backend
	for _, b := range local {
		if !b.Addr.IsValid() {
			continue
		}
		addr := b.Addr.Unmap()
		if _, dup := seen[addr]; dup {
			continue
		}
		seen[addr] = struct{}{}
		if !b.Ready || b.Terminating {
			continue
		}
		locals = append(locals, Backend{Addr: addr, Cluster: localCluster, Ports: maps.Clone(b.Ports), Ready: true})
	}
	if !ann.Global {
		return sortBackends(locals)
	}

	var remoteBackends []Backend
	for _, cs := range peers(localCluster, namespace, name, remotes) {
		for _, b := range RemoteBackends(*cs) {
			if _, dup := seen[b.Addr]; dup {
				continue
			}
			seen[b.Addr] = struct{}{}
			remoteBackends = append(remoteBackends, b)
		}
	}

	switch ann.Affinity {
	case AffinityLocal:
		remoteBackends = withoutFamiliesOf(remoteBackends, locals)
	case AffinityRemote:
		locals = withoutFamiliesOf(locals, remoteBackends)
	}
	return sortBackends(append(locals, remoteBackends...))
}

// withoutFamiliesOf returns the backends of bs whose address family has
// no backend in preferred (the addresses are unmapped).
func withoutFamiliesOf(bs, preferred []Backend) []Backend {
	var has4, has6 bool
	for _, b := range preferred {
		if b.Addr.Is4() {
			has4 = true
		} else {
			has6 = true
		}
	}
	out := bs[:0:0]
	for _, b := range bs {
		if b.Addr.Is4() && !has4 || b.Addr.Is6() && !has6 {
			out = append(out, b)
		}
	}
	return out
}

// peers returns the remote ClusterServices Merge uses, sorted by cluster,
// one per cluster (the first in remotes).
func peers(localCluster, namespace, name string, remotes []schema.ClusterService) []*schema.ClusterService {
	var out []*schema.ClusterService
	for i := range remotes {
		cs := &remotes[i]
		if !cs.Shared || cs.Namespace != namespace || cs.Name != name || cs.Cluster == "" || cs.Cluster == localCluster {
			continue
		}
		out = append(out, cs)
	}
	slices.SortStableFunc(out, func(x, y *schema.ClusterService) int { return cmp.Compare(x.Cluster, y.Cluster) })
	return slices.CompactFunc(out, func(x, y *schema.ClusterService) bool { return x.Cluster == y.Cluster })
}

// RemoteBackends returns the backends of a peer's ClusterService, sorted by
// address, each with Cluster cs.Cluster, Ready true and Terminating false.
// It does not look at Shared, Namespace or Name (Merge does).
//
// Remote data is not trusted. A backend is skipped when its key is not an
// IP address, carries a zone, or is not a unicast address another cluster
// could reach (unspecified, loopback, link-local, multicast, broadcast), or
// when one of its ports is null, has port 0 or a protocol other than TCP,
// UDP or SCTP. Addresses are unmapped (IPv4-mapped IPv6 becomes IPv4); when
// two keys are the same address, the first key in string order wins.
func RemoteBackends(cs schema.ClusterService) []Backend {
	out := make([]Backend, 0, len(cs.Backends))
	for _, key := range slices.Sorted(maps.Keys(cs.Backends)) {
		addr, ok := remoteAddr(key)
		if !ok {
			continue
		}
		ports, ok := remotePorts(cs.Backends[key])
		if !ok {
			continue
		}
		out = append(out, Backend{Addr: addr, Cluster: cs.Cluster, Ports: ports, Ready: true})
	}
	// Stable: among keys of the same address, the first key stays first
	// and CompactFunc keeps it.
	slices.SortStableFunc(out, func(x, y Backend) int { return x.Addr.Compare(y.Addr) })
	return slices.CompactFunc(out, func(x, y Backend) bool { return x.Addr == y.Addr })
}

// remoteAddr parses a backend key with the rule BuildClusterService applies
// to exported addresses.
func remoteAddr(key string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(key)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	a = a.Unmap()
	return a, a.IsGlobalUnicast()
}

// remotePorts copies a backend's ports, or reports false when one of them
// is unusable.
func remotePorts(pc schema.PortConfiguration) (map[string]schema.L4Addr, bool) {
	ports := make(map[string]schema.L4Addr, len(pc))
	for name, l4 := range pc {
		if l4 == nil || l4.Port == 0 {
			return nil, false
		}
		switch l4.Protocol {
		case schema.ProtocolTCP, schema.ProtocolUDP, schema.ProtocolSCTP:
		default:
			return nil, false
		}
		ports[name] = *l4
	}
	return ports, true
}

// sortBackends sorts bs by cluster, then address, and returns it, or nil
// when it is empty.
func sortBackends(bs []Backend) []Backend {
	if len(bs) == 0 {
		return nil
	}
	slices.SortFunc(bs, func(x, y Backend) int {
		if c := cmp.Compare(x.Cluster, y.Cluster); c != 0 {
			return c
		}
		return x.Addr.Compare(y.Addr)
	})
	return bs
}
