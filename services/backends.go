package services

import (
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// backends merges the exported endpoints of svc's own EndpointSlices into
// the backends, hostnames and zones of cs.
func (b *builder) backends(cs *schema.ClusterService, svc *corev1.Service, epSlices []*discoveryv1.EndpointSlice) {
	own := make([]*discoveryv1.EndpointSlice, 0, len(epSlices))
	for _, s := range epSlices {
		if s != nil && s.Namespace == svc.Namespace && s.Labels[discoveryv1.LabelServiceName] == svc.Name {
			own = append(own, s)
		}
	}
	// Merge in name order so that the result, and which EndpointSlice wins
	// a clash, do not depend on the order of the caller's list.
	slices.SortStableFunc(own, func(x, y *discoveryv1.EndpointSlice) int {
		return strings.Compare(x.Name, y.Name)
	})
	m := &merger{b: b, be: map[string]schema.PortConfiguration{}, origin: map[portKey]string{},
		hostnames: map[string]string{}, zones: map[string]schema.BackendZone{}}
	for _, s := range own {
		m.addSlice(s)
	}
	cs.Backends = m.be
	if len(m.hostnames) > 0 {
		cs.Hostnames = m.hostnames
	}
	if len(m.zones) > 0 {
		cs.Zones = m.zones
	}
}

// portKey is a port name of a backend address.
type portKey struct{ ip, name string }

// merger accumulates backends across EndpointSlices.
type merger struct {
	b      *builder
	be     map[string]schema.PortConfiguration
	origin map[portKey]string // the EndpointSlice a backend port came from
	// The topology of a backend, as Cilium exports it: the endpoint's
	// hostname, and its zone with the zones it is hinted for. The first
	// EndpointSlice (by name) that names them for an address wins.
	hostnames map[string]string
	zones     map[string]schema.BackendZone
}

func (m *merger) addSlice(s *discoveryv1.EndpointSlice) {
	where := "endpointslice " + s.Name
	if s.AddressType == discoveryv1.AddressTypeFQDN {
		m.b.skipf("%s has addressType FQDN; only IPv4 and IPv6 endpoints can be exported", where)
		return
	}
	ports := m.b.slicePorts(where, s.Ports)
	names := slices.Sorted(maps.Keys(ports))
	for i, ep := range s.Endpoints {
		if !exportedEndpoint(ep.Conditions) {
			continue
		}
		for j, raw := range ep.Addresses {
			ip, err := canonicalIP(raw)
			if err != nil {
				m.b.skipf("%s: endpoints[%d].addresses[%d]: %v", where, i, j, err)
				continue
			}
			m.add(where, ip, ports, names)
			m.addTopology(ip, ep)
		}
	}
}

// addTopology records the hostname and the zone of an endpoint's address,
// as Cilium's operator does: the zone from endpoint.zone (or the deprecated
// topology label), with the zones of its hints (an empty list, never null,
// without hints); nothing for an endpoint without a zone.
func (m *merger) addTopology(ip string, ep discoveryv1.Endpoint) {
	if h := ep.Hostname; h != nil && *h != "" {
		if _, ok := m.hostnames[ip]; !ok {
			m.hostnames[ip] = *h
		}
	}
	zone := ""
	if ep.Zone != nil {
		zone = *ep.Zone
	} else {
		zone = ep.DeprecatedTopology[corev1.LabelTopologyZone]
	}
	if _, ok := m.zones[ip]; ok || zone == "" {
		return
	}
	bz := schema.BackendZone{Zone: zone, ForZones: []schema.ForZone{}}
	if ep.Hints != nil {
		for _, fz := range ep.Hints.ForZones {
			bz.ForZones = append(bz.ForZones, schema.ForZone{Name: fz.Name})
		}
	}
	m.zones[ip] = bz
}

// add merges the ports of one address, keeping the first port of each name.
func (m *merger) add(where, ip string, ports schema.PortConfiguration, names []string) {
	pc, ok := m.be[ip]
	if !ok {
		pc = schema.PortConfiguration{}
		m.be[ip] = pc
	}
	for _, name := range names {
		l4 := ports[name]
		k := portKey{ip, name}
		if old, ok := pc[name]; ok {
			if *old != *l4 {
				m.b.skipf("%s: backend %s port %q is %s/%d here but %s/%d in %s, which is kept; make the EndpointSlices agree",
					where, ip, name, l4.Protocol, l4.Port, old.Protocol, old.Port, m.origin[k])
			}
			continue
		}
		c := *l4
		pc[name] = &c
		m.origin[k] = where
	}
}

// exportedEndpoint is the export rule: ready (nil means ready, per the
// EndpointSlice API) or serving, terminating or not.
func exportedEndpoint(c discoveryv1.EndpointConditions) bool {
	return c.Ready == nil || *c.Ready || (c.Serving != nil && *c.Serving)
}

// slicePorts returns the ports of an EndpointSlice by name.
func (b *builder) slicePorts(where string, ports []discoveryv1.EndpointPort) schema.PortConfiguration {
	pc := schema.PortConfiguration{}
	seen := map[string]int{}
	for i, p := range ports {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if p.Port == nil {
			b.skipf("%s: ports[%d] (%q) has no port number (\"all ports\" cannot be exported)", where, i, name)
			continue
		}
		var proto corev1.Protocol
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		l4, err := l4Addr(name, proto, *p.Port)
		if err != nil {
			b.skipf("%s: ports[%d] (%q): %v", where, i, name, err)
			continue
		}
		if j, dup := seen[name]; dup {
			b.skipf("%s: ports[%d]: name %q is already used by ports[%d]", where, i, name, j)
			continue
		}
		seen[name] = i
		pc[name] = l4
	}
	return pc
}
