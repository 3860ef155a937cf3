package services

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

type portMap = map[string]schema.PortConfiguration

// dnsLabelMsg is apimachinery's explanation of why name is not a DNS label.
func dnsLabelMsg(name string) string {
	return strings.Join(validation.IsDNS1123Label(name), "; ")
}

func TestBuildClusterService(t *testing.T) {
	const tcp, udp, sctp = corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP
	http := []discoveryv1.EndpointPort{epPort("http", tcp, 8080)}
	httpBE := schema.PortConfiguration{"http": l4("TCP", 8080)}
	httpFE := schema.PortConfiguration{"http": l4("TCP", 80)}
	oneIP := []string{"10.96.0.10"}
	conds := func(ready, serving, terminating *bool) discoveryv1.EndpointConditions {
		return discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}
	}
	yes, no := new(true), new(false)

	tests := []struct {
		name   string
		svc    *corev1.Service
		slices []*discoveryv1.EndpointSlice
		want   schema.ClusterService
		errs   []string
	}{
		{
			name:   "single unnamed port",
			svc:    newService(oneIP, svcPort("", tcp, 80)),
			slices: []*discoveryv1.EndpointSlice{newSlice("cart-a", []discoveryv1.EndpointPort{{Protocol: new(tcp), Port: new(int32(8080))}}, ready("10.0.1.1"))},
			want: wantService(
				portMap{"10.96.0.10": {"": l4("TCP", 80)}},
				portMap{"10.0.1.1": {"": l4("TCP", 8080)}}),
		},
		{
			name: "multi-port with names and every protocol",
			svc:  newService(oneIP, svcPort("http", tcp, 80), svcPort("dns", udp, 53), svcPort("sig", sctp, 9000)),
			slices: []*discoveryv1.EndpointSlice{newSlice("cart-a",
				[]discoveryv1.EndpointPort{epPort("http", tcp, 8080), epPort("dns", udp, 5353), epPort("sig", sctp, 9001)},
				ready("10.0.1.1", "10.0.1.2"))},
			want: wantService(
				portMap{"10.96.0.10": {"http": l4("TCP", 80), "dns": l4("UDP", 53), "sig": l4("SCTP", 9000)}},
				portMap{
					"10.0.1.1": {"http": l4("TCP", 8080), "dns": l4("UDP", 5353), "sig": l4("SCTP", 9001)},
					"10.0.1.2": {"http": l4("TCP", 8080), "dns": l4("UDP", 5353), "sig": l4("SCTP", 9001)},
				}),
		},
		{
			name:   "unnamed port of a multi-port service is skipped",
			svc:    newService(oneIP, svcPort("http", tcp, 80), svcPort("", tcp, 443)),
			slices: []*discoveryv1.EndpointSlice{newSlice("cart-a", http, ready("10.0.1.1"))},
			want:   wantService(portMap{"10.96.0.10": httpFE}, portMap{"10.0.1.1": httpBE}),
			errs:   []string{skipPrefix + "spec.ports[1] (port 443) has no name; name every port of a multi-port service"},
		},
		{
			name: "bad service ports are skipped",
			svc: newService(oneIP, svcPort("http", tcp, 80), svcPort("icmp", "ICMP", 1),
				svcPort("zero", tcp, 0), svcPort("big", udp, 65536), svcPort("http", udp, 81), svcPort("max", "", 65535), svcPort("Web_UI", tcp, 82)),
			want: wantService(portMap{"10.96.0.10": {"http": l4("TCP", 80), "max": l4("TCP", 65535)}}, portMap{}),
			errs: []string{
				skipPrefix + `spec.ports[1] ("icmp"): protocol "ICMP" is not TCP, UDP or SCTP`,
				skipPrefix + `spec.ports[2] ("zero"): port 0 is out of range 1..65535`,
				skipPrefix + `spec.ports[3] ("big"): port 65536 is out of range 1..65535`,
				skipPrefix + `spec.ports[4]: name "http" is already used by spec.ports[0]; give each port its own name`,
				skipPrefix + `spec.ports[6] ("Web_UI"): name is not a DNS label: ` + dnsLabelMsg("Web_UI"),
			},
		},
		{
			name: "dual-stack",
			svc:  newService([]string{"10.96.0.10", "FD00::A"}, svcPort("http", tcp, 80)),
			slices: []*discoveryv1.EndpointSlice{
				newSlice("cart-v4", http, ready("10.0.1.1")),
				withAddressType(newSlice("cart-v6", http, ready("FD00:10:0::1", "fd00:10::2")), discoveryv1.AddressTypeIPv6),
			},
			want: wantService(
				portMap{"10.96.0.10": httpFE, "fd00::a": httpFE},
				portMap{"10.0.1.1": httpBE, "fd00:10::1": httpBE, "fd00:10::2": httpBE}),
		},
		{
			name: "topology: hostnames and zones with hints, as Cilium exports them",
			svc:  newService(oneIP, svcPort("http", tcp, 80)),
			slices: []*discoveryv1.EndpointSlice{
				newSlice("cart-a", http, func() []discoveryv1.Endpoint {
					withZone := ready("10.0.1.1")
					withZone.Hostname, withZone.Zone = new("cart-0"), new("zone-a")
					withZone.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}, {Name: "zone-b"}}}
					noHints := ready("10.0.1.2")
					noHints.Zone = new("zone-b")
					legacy := ready("10.0.1.3")
					legacy.DeprecatedTopology = map[string]string{corev1.LabelTopologyZone: "zone-c"}
					return []discoveryv1.Endpoint{withZone, noHints, legacy, ready("10.0.1.4")}
				}()...),
				// a later slice naming the same address does not override it
				newSlice("cart-b", http, func() discoveryv1.Endpoint {
					e := ready("10.0.1.1")
					e.Hostname, e.Zone = new("other"), new("zone-z")
					return e
				}()),
			},
			want: func() schema.ClusterService {
				cs := wantService(portMap{"10.96.0.10": httpFE},
					portMap{"10.0.1.1": httpBE, "10.0.1.2": httpBE, "10.0.1.3": httpBE, "10.0.1.4": httpBE})
				cs.Hostnames = map[string]string{"10.0.1.1": "cart-0"}
				cs.Zones = map[string]schema.BackendZone{
					"10.0.1.1": {Zone: "zone-a", ForZones: []schema.ForZone{{Name: "zone-a"}, {Name: "zone-b"}}},
					"10.0.1.2": {Zone: "zone-b", ForZones: []schema.ForZone{}},
					"10.0.1.3": {Zone: "zone-c", ForZones: []schema.ForZone{}},
				}
				return cs
			}(),
		},
		{
			name: "clusterIP used when clusterIPs is empty",
			svc: func() *corev1.Service {
				s := newService(nil, svcPort("http", tcp, 80))
				s.Spec.ClusterIP = "10.96.0.11"
				return s
			}(),
			slices: []*discoveryv1.EndpointSlice{newSlice("cart-a", http, ready("::ffff:10.0.1.9"))},
			want:   wantService(portMap{"10.96.0.11": httpFE}, portMap{"10.0.1.9": httpBE}),
		},
		{
			name: "headless exports backends only",
			svc: func() *corev1.Service {
				s := newService([]string{corev1.ClusterIPNone}, svcPort("http", tcp, 80))
				s.Spec.ClusterIP = corev1.ClusterIPNone
				return s
			}(),
			slices: []*discoveryv1.EndpointSlice{newSlice("cart-a", http, ready("10.0.1.1"))},
			want:   wantService(portMap{}, portMap{"10.0.1.1": httpBE}),
		},
		{
			name:   "headless without ports",
			svc:    newService([]string{"None"}),
			slices: []*discoveryv1.EndpointSlice{newSlice("cart-a", nil, ready("10.0.1.1"))},
			want:   wantService(portMap{}, portMap{"10.0.1.1": {}}),
		},
		{
			name: "slices of other services, namespaces and nil are ignored",
			svc:  newService(oneIP, svcPort("http", tcp, 80)),
			slices: []*discoveryv1.EndpointSlice{
				nil,
				func() *discoveryv1.EndpointSlice {
					s := newSlice("other-a", http, ready("10.0.9.1"))
					s.Labels[discoveryv1.LabelServiceName] = "other"
					return s
				}(),
				func() *discoveryv1.EndpointSlice {
					s := newSlice("cart-x", http, ready("10.0.9.2"))
					s.Namespace = "elsewhere"
					return s
				}(),
				func() *discoveryv1.EndpointSlice {
					s := newSlice("cart-y", http, ready("10.0.9.3"))
					s.Labels = nil
					return s
				}(),
				newSlice("cart-a", http, ready("10.0.1.1")),
			},
			want: wantService(portMap{"10.96.0.10": httpFE}, portMap{"10.0.1.1": httpBE}),
		},
		{
			name: "endpoint conditions",
			svc:  newService(oneIP, svcPort("http", tcp, 80)),
			slices: []*discoveryv1.EndpointSlice{newSlice("cart-a", http,
				endpoint(conds(nil, nil, nil), "10.0.1.1"),             // unknown counts as ready
				endpoint(conds(yes, yes, no), "10.0.1.2"),              // ready
				endpoint(conds(no, nil, nil), "10.0.1.3"),              // not ready
				endpoint(conds(no, yes, yes), "10.0.1.4"),              // terminating but serving
				endpoint(conds(no, no, yes), "10.0.1.5"),               // terminating, not serving
				endpoint(conds(no, yes, no), "10.0.1.6"),               // serving
				endpoint(conds(nil, nil, yes), "10.0.1.7"),             // unknown readiness, terminating
				endpoint(conds(no, no, no), "10.0.1.8"),                // neither
				discoveryv1.Endpoint{Conditions: conds(yes, yes, nil)}, // no address
			)},
			want: wantService(portMap{"10.96.0.10": httpFE}, portMap{
				"10.0.1.1": httpBE, "10.0.1.2": httpBE, "10.0.1.4": httpBE, "10.0.1.6": httpBE, "10.0.1.7": httpBE,
			}),
		},
		{
			name: "nil port fields",
			svc:  newService(oneIP, svcPort("", "", 80)),
			slices: []*discoveryv1.EndpointSlice{newSlice("cart-a", []discoveryv1.EndpointPort{
				{Name: new("all")},
				{Port: new(int32(8080))},
				{Name: new("udp"), Protocol: new(udp), Port: new(int32(53))},
				{Name: new("bad"), Protocol: new(corev1.Protocol("icmp")), Port: new(int32(1))},
				{Name: new("neg"), Port: new(int32(-1))},
				{Name: new("udp"), Port: new(int32(54))},
				{Name: new("\xff"), Port: new(int32(55))},
			}, ready("10.0.1.1"))},
			want: wantService(
				portMap{"10.96.0.10": {"": l4("TCP", 80)}},
				portMap{"10.0.1.1": {"": l4("TCP", 8080), "udp": l4("UDP", 53)}}),
			errs: []string{
				skipPrefix + `endpointslice cart-a: ports[0] ("all") has no port number ("all ports" cannot be exported)`,
				skipPrefix + `endpointslice cart-a: ports[3] ("bad"): protocol "icmp" is not TCP, UDP or SCTP`,
				skipPrefix + `endpointslice cart-a: ports[4] ("neg"): port -1 is out of range 1..65535`,
				skipPrefix + `endpointslice cart-a: ports[5]: name "udp" is already used by ports[2]`,
				skipPrefix + `endpointslice cart-a: ports[6] ("\xff"): name is not a DNS label: ` + dnsLabelMsg("\xff"),
			},
		},
		{
			name: "duplicate addresses are merged in slice name order",
			svc:  newService(oneIP, svcPort("http", tcp, 80), svcPort("metrics", tcp, 9090)),
			slices: []*discoveryv1.EndpointSlice{
				newSlice("cart-c", []discoveryv1.EndpointPort{epPort("http", tcp, 9999)}, ready("10.0.1.1")),
				newSlice("cart-b", []discoveryv1.EndpointPort{epPort("metrics", tcp, 9100), epPort("http", tcp, 8080)}, ready("10.0.1.1", "10.0.1.2")),
				newSlice("cart-a", http, ready("10.0.1.1", "10.0.1.1")),
			},
			want: wantService(
				portMap{"10.96.0.10": {"http": l4("TCP", 80), "metrics": l4("TCP", 9090)}},
				portMap{
					"10.0.1.1": {"http": l4("TCP", 8080), "metrics": l4("TCP", 9100)},
					"10.0.1.2": {"http": l4("TCP", 8080), "metrics": l4("TCP", 9100)},
				}),
			errs: []string{skipPrefix + `endpointslice cart-c: backend 10.0.1.1 port "http" is TCP/9999 here but TCP/8080 in endpointslice cart-a, which is kept; make the EndpointSlices agree`},
		},
		{
			name: "invalid addresses are reported",
			svc:  newService([]string{"10.96.0.300", "10.96.0.10", "127.0.0.1"}, svcPort("http", tcp, 80)),
			slices: []*discoveryv1.EndpointSlice{
				newSlice("cart-a", http, ready("not-an-ip", "10.0.1.1", "fe80::1%eth0", "0.0.0.0"), ready("224.0.0.1", "fe80::1", "255.255.255.255", "")),
				withAddressType(newSlice("cart-fqdn", http, ready("cart.example.com")), discoveryv1.AddressTypeFQDN),
			},
			want: wantService(portMap{"10.96.0.10": httpFE}, portMap{"10.0.1.1": httpBE}),
			errs: []string{
				skipPrefix + `spec.clusterIPs[0]: "10.96.0.300" is not an IP address`,
				skipPrefix + `spec.clusterIPs[2]: address "127.0.0.1" is not reachable from another cluster (unspecified, loopback, link-local, multicast or broadcast)`,
				skipPrefix + `endpointslice cart-a: endpoints[0].addresses[0]: "not-an-ip" is not an IP address`,
				skipPrefix + `endpointslice cart-a: endpoints[0].addresses[2]: address "fe80::1%eth0" has a zone`,
				skipPrefix + `endpointslice cart-a: endpoints[0].addresses[3]: address "0.0.0.0" is not reachable from another cluster (unspecified, loopback, link-local, multicast or broadcast)`,
				skipPrefix + `endpointslice cart-a: endpoints[1].addresses[0]: address "224.0.0.1" is not reachable from another cluster (unspecified, loopback, link-local, multicast or broadcast)`,
				skipPrefix + `endpointslice cart-a: endpoints[1].addresses[1]: address "fe80::1" is not reachable from another cluster (unspecified, loopback, link-local, multicast or broadcast)`,
				skipPrefix + `endpointslice cart-a: endpoints[1].addresses[2]: address "255.255.255.255" is not reachable from another cluster (unspecified, loopback, link-local, multicast or broadcast)`,
				skipPrefix + `endpointslice cart-a: endpoints[1].addresses[3]: "" is not an IP address`,
				skipPrefix + `endpointslice cart-fqdn has addressType FQDN; only IPv4 and IPv6 endpoints can be exported`,
			},
		},
		{
			name: "nil labels and selector become empty maps, no slices",
			svc: func() *corev1.Service {
				s := newService(oneIP, svcPort("http", tcp, 80))
				s.Labels, s.Spec.Selector = nil, nil
				return s
			}(),
			want: func() schema.ClusterService {
				cs := wantService(portMap{"10.96.0.10": httpFE}, portMap{})
				cs.Labels, cs.Selector = map[string]string{}, map[string]string{}
				return cs
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := BuildClusterService(testCluster, testClusterID, tt.svc, tt.slices)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("BuildClusterService (-want +got):\n%s", d)
			}
			checkErrors(t, errs, ErrSkipped, tt.errs)
			checkRoundTrip(t, got)
		})
	}
}
