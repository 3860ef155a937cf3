package services

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Frontend is one cluster IP and port of a Service.
type Frontend struct {
	Addr netip.Addr
	Port uint16
	// Protocol is "TCP", "UDP" or "SCTP".
	Protocol string
	// Name is the Service port's name ("" for a single unnamed port); a
	// backend serves the frontend on its own port of the same name.
	Name string
}

// Target is where one connection to a frontend goes: a backend address
// and the backend's port for that frontend.
type Target struct {
	Addr    netip.Addr
	Port    uint16
	Cluster string
}

// Local returns the frontends of a local Service and its backends from
// its own EndpointSlices with their conditions (selection is Merge's job),
// and the problems that made it leave parts out. Frontends are sorted by
// address, then port; backends by address. A headless or ExternalName
// Service has no frontends.
func Local(cluster string, svc *corev1.Service, epSlices []*discoveryv1.EndpointSlice) ([]Frontend, []Backend, []error) {
	b := &builder{obj: "service " + svc.Namespace + "/" + svc.Name}
	var fes []Frontend
	if svc.Spec.Type != corev1.ServiceTypeExternalName {
		for ip, ports := range b.frontends(svc) {
			addr := netip.MustParseAddr(ip) // canonicalIP checked it
			for name, l4 := range ports {
				fes = append(fes, Frontend{Addr: addr, Port: l4.Port, Protocol: l4.Protocol, Name: name})
			}
		}
	}
	slices.SortFunc(fes, func(x, y Frontend) int {
		return cmp.Or(x.Addr.Compare(y.Addr), cmp.Compare(x.Port, y.Port), strings.Compare(x.Protocol, y.Protocol))
	})
	own := make([]*discoveryv1.EndpointSlice, 0, len(epSlices))
	for _, s := range epSlices {
		if s != nil && s.Namespace == svc.Namespace && s.Labels[discoveryv1.LabelServiceName] == svc.Name {
			own = append(own, s)
		}
	}
	slices.SortStableFunc(own, func(x, y *discoveryv1.EndpointSlice) int { return strings.Compare(x.Name, y.Name) })
	byAddr := map[netip.Addr]*Backend{}
	for _, s := range own {
		where := "endpointslice " + s.Name
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			b.skipf("%s has addressType FQDN; only IPv4 and IPv6 endpoints are load-balanced", where)
			continue
		}
		ports := b.slicePorts(where, s.Ports)
		for i, ep := range s.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			terminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
			for j, raw := range ep.Addresses {
				ip, err := canonicalIP(raw)
				if err != nil {
					b.skipf("%s: endpoints[%d].addresses[%d]: %v", where, i, j, err)
					continue
				}
				addr := netip.MustParseAddr(ip)
				be, ok := byAddr[addr]
				if !ok {
					be = &Backend{Addr: addr, Cluster: cluster, Ports: map[string]schema.L4Addr{}, Ready: ready, Terminating: terminating}
					byAddr[addr] = be
				}
				for name, l4 := range ports {
					if _, dup := be.Ports[name]; !dup {
						be.Ports[name] = *l4
					}
				}
			}
		}
	}
	bes := make([]Backend, 0, len(byAddr))
	for _, be := range byAddr {
		bes = append(bes, *be)
	}
	slices.SortFunc(bes, func(x, y Backend) int { return x.Addr.Compare(y.Addr) })
	return fes, bes, b.errs
}

// Targets returns where connections to fe go among the selected backends:
// each backend of fe's address family that has a port of fe's name and
// protocol, in the order of backends, once per address. A dual-stack
// Service's IPv4 cluster IP thus gets its IPv4 backends only and its IPv6
// cluster IP its IPv6 ones (IPv4-mapped addresses count as IPv4): a socket
// connected to one family cannot be translated to the other.
func Targets(fe Frontend, backends []Backend) []Target {
	var out []Target
	seen := map[netip.Addr]bool{}
	v4 := fe.Addr.Unmap().Is4()
	for _, be := range backends {
		if be.Addr.Unmap().Is4() != v4 {
			continue
		}
		l4, ok := be.Ports[fe.Name]
		if !ok || l4.Protocol != fe.Protocol || seen[be.Addr] {
			continue
		}
		seen[be.Addr] = true
		out = append(out, Target{Addr: be.Addr, Port: l4.Port, Cluster: be.Cluster})
	}
	return out
}

// String formats a frontend as "addr:port/proto".
func (f Frontend) String() string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(f.Addr, f.Port), f.Protocol)
}
