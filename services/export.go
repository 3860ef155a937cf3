package services

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// ErrSkipped is matched by errors.Is for an error about one part of a
// Service (a port, a cluster IP, an EndpointSlice, an address) that was left
// out of the export; the rest of the Service is exported.
var ErrSkipped = errors.New("left out of the export")

// ErrNotExportable is matched by errors.Is for an error that prevents the
// Service from being exported at all; the ClusterService returned with it is
// the zero value and must not be written.
var ErrNotExportable = errors.New("not exported")

// BuildClusterService returns the etcd value that cluster (with ID
// clusterID) exports for svc, whose backends are taken from epSlices. It
// does not look at annotations: call it for the Services that ShouldExport
// accepts.
//
//   - Frontends: every cluster IP of spec.clusterIPs (spec.clusterIP when
//     clusterIPs is empty) except "None" and "", each with every Service
//     port by name. A single unnamed port is named "", as in Cilium; an
//     unnamed port of a multi-port Service is skipped. A headless Service
//     has no frontends but still exports its backends.
//   - Backends: the addresses of the endpoints that are ready (Ready nil or
//     true) or serving (Serving true, terminating or not) in the
//     EndpointSlices of the same namespace labelled
//     kubernetes.io/service-name=<svc.Name> (others are ignored), each with
//     the ports of its EndpointSlice (nil name = "", nil protocol = TCP). An
//     address found in several EndpointSlices gets the union of their
//     ports; on a clash the EndpointSlice first by name wins.
//   - A port is skipped when its name is neither "" nor a DNS label, its
//     protocol is not TCP, UDP or SCTP, or its number is not in 1..65535
//     (the API server already enforces all of this on real objects).
//   - Addresses are written in canonical form (IPv4-mapped IPv6 unmapped);
//     addresses that are not IPs, carry a zone, or are not unicast
//     addresses another cluster could reach (unspecified, loopback,
//     link-local, multicast) are skipped.
//   - Hostnames and Zones: the topology of each backend address, as
//     Cilium's operator exports it: the endpoint's hostname, and its zone
//     (endpoint.zone, else the deprecated topology label) with the zones of
//     its hints, so that peers can route by topology. The first
//     EndpointSlice by name that names them for an address wins. Both are
//     nil when no backend has one.
//   - Labels and Selector are copies of svc's (never nil), Shared is true,
//     IncludeExternal true, as Cilium's clustermesh-apiserver writes it.
//
// Every skipped part is reported by an error matching ErrSkipped, and the
// returned value is exportable and passes schema.DecodeClusterService. When
// the Service cannot be exported at all (nil, type ExternalName, a cluster,
// namespace or name that cannot be an etcd key segment, clusterID not in
// 1..schema.MaxClusterID), the errors match ErrNotExportable and the value
// is the zero ClusterService.
func BuildClusterService(cluster string, clusterID uint32, svc *corev1.Service, epSlices []*discoveryv1.EndpointSlice) (schema.ClusterService, []error) {
	if svc == nil {
		return schema.ClusterService{}, []error{fmt.Errorf("service is nil: %w", ErrNotExportable)}
	}
	b := &builder{obj: "service " + svc.Namespace + "/" + svc.Name}
	if errs := b.checkExportable(cluster, clusterID, svc); len(errs) > 0 {
		return schema.ClusterService{}, errs
	}
	cs := schema.ClusterService{
		Cluster:         cluster,
		Namespace:       svc.Namespace,
		Name:            svc.Name,
		Frontends:       b.frontends(svc),
		Labels:          copyMap(svc.Labels),
		Selector:        copyMap(svc.Spec.Selector),
		Shared:          true,
		IncludeExternal: true,
		ClusterID:       clusterID,
	}
	b.backends(&cs, svc, epSlices)
	return cs, b.errs
}

// builder collects the errors of one BuildClusterService call.
type builder struct {
	obj  string // "service <ns>/<name>"
	errs []error
}

// skipf records that a part of the Service was left out of the export.
func (b *builder) skipf(format string, args ...any) {
	b.errs = append(b.errs, fmt.Errorf("%s: %w: %s", b.obj, ErrSkipped, fmt.Sprintf(format, args...)))
}

func (b *builder) checkExportable(cluster string, clusterID uint32, svc *corev1.Service) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %w: %s", b.obj, ErrNotExportable, fmt.Sprintf(format, args...)))
	}
	if clusterID == 0 || clusterID > schema.MaxClusterID {
		fail("cluster ID %d is out of range 1..%d; configure a valid cluster ID", clusterID, schema.MaxClusterID)
	}
	key := schema.DefaultPaths().Service(cluster, svc.Namespace, svc.Name)
	if _, _, _, err := schema.ParseServiceKey(key); err != nil {
		fail("cluster %q, namespace and name must each be one etcd key segment: %v", cluster, err)
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		fail("type ExternalName has no cluster IP or endpoints to share; remove the global annotation")
	}
	return errs
}

// frontends maps every cluster IP to the Service ports.
func (b *builder) frontends(svc *corev1.Service) map[string]schema.PortConfiguration {
	ports := b.servicePorts(svc.Spec.Ports)
	field, ips := "spec.clusterIPs", svc.Spec.ClusterIPs
	if len(ips) == 0 {
		field, ips = "spec.clusterIP", []string{svc.Spec.ClusterIP}
	}
	fe := map[string]schema.PortConfiguration{}
	for i, raw := range ips {
		if raw == "" || strings.EqualFold(raw, corev1.ClusterIPNone) {
			continue
		}
		ip, err := canonicalIP(raw)
		if err != nil {
			b.skipf("%s[%d]: %v", field, i, err)
			continue
		}
		fe[ip] = clonePorts(ports)
	}
	return fe
}

// servicePorts returns the Service ports by name.
func (b *builder) servicePorts(ports []corev1.ServicePort) schema.PortConfiguration {
	pc := schema.PortConfiguration{}
	seen := map[string]int{}
	for i, p := range ports {
		if p.Name == "" && len(ports) > 1 {
			b.skipf("spec.ports[%d] (port %d) has no name; name every port of a multi-port service", i, p.Port)
			continue
		}
		l4, err := l4Addr(p.Name, p.Protocol, p.Port)
		if err != nil {
			b.skipf("spec.ports[%d] (%q): %v", i, p.Name, err)
			continue
		}
		if j, dup := seen[p.Name]; dup {
			b.skipf("spec.ports[%d]: name %q is already used by spec.ports[%d]; give each port its own name", i, p.Name, j)
			continue
		}
		seen[p.Name] = i
		pc[p.Name] = l4
	}
	return pc
}

// l4Addr checks a port name ("" or a DNS label, as Kubernetes requires), a
// protocol ("" means TCP) and a port number.
func l4Addr(name string, proto corev1.Protocol, port int32) (*schema.L4Addr, error) {
	if name != "" {
		if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
			return nil, fmt.Errorf("name is not a DNS label: %s", strings.Join(msgs, "; "))
		}
	}
	switch proto {
	case "":
		proto = corev1.ProtocolTCP
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
	default:
		return nil, fmt.Errorf("protocol %q is not TCP, UDP or SCTP", proto)
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("port %d is out of range 1..65535", port)
	}
	return &schema.L4Addr{Protocol: string(proto), Port: uint16(port)}, nil
}

// canonicalIP parses an address and returns the canonical text form the
// schema requires.
func canonicalIP(raw string) (string, error) {
	a, err := netip.ParseAddr(raw)
	switch {
	case err != nil:
		return "", fmt.Errorf("%q is not an IP address", raw)
	case a.Zone() != "":
		return "", fmt.Errorf("address %q has a zone", raw)
	}
	a = a.Unmap()
	if !a.IsGlobalUnicast() {
		return "", fmt.Errorf("address %q is not reachable from another cluster (unspecified, loopback, link-local, multicast or broadcast)", raw)
	}
	return a.String(), nil
}

// clonePorts deep-copies a port configuration, so that no two frontends or
// backends share a map or an *L4Addr.
func clonePorts(pc schema.PortConfiguration) schema.PortConfiguration {
	out := make(schema.PortConfiguration, len(pc))
	for name, l4 := range pc {
		c := *l4
		out[name] = &c
	}
	return out
}

// copyMap copies m into a new, never nil, map (Cilium writes {} rather than
// null for empty labels and selectors).
func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	maps.Copy(out, m)
	return out
}
