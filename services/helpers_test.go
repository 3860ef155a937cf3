package services

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Test fixtures: Service shop/cart exported by cluster1 (ID 7).
const (
	testCluster   = "cluster1"
	testClusterID = 7
	testNS        = "shop"
	testName      = "cart"
	skipPrefix    = "service shop/cart: left out of the export: "
)

func annotated(ann map[string]string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: testName, Annotations: ann}}
}

// newService returns shop/cart with the given cluster IPs and ports.
func newService(clusterIPs []string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: testName, Labels: map[string]string{"team": "web"}},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeClusterIP,
			ClusterIPs: clusterIPs,
			Selector:   map[string]string{"app": "cart"},
			Ports:      ports,
		},
	}
}

func svcPort(name string, proto corev1.Protocol, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: port}
}

// newSlice returns an IPv4 EndpointSlice of shop/cart.
func newSlice(name string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: testNS,
			Name:      name,
			Labels:    map[string]string{discoveryv1.LabelServiceName: testName},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports:       ports,
	}
}

func withAddressType(s *discoveryv1.EndpointSlice, t discoveryv1.AddressType) *discoveryv1.EndpointSlice {
	s.AddressType = t
	return s
}

func epPort(name string, proto corev1.Protocol, port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: new(name), Protocol: new(proto), Port: new(port)}
}

// ready returns an endpoint whose Ready condition is true.
func ready(addrs ...string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: addrs, Conditions: discoveryv1.EndpointConditions{Ready: new(true)}}
}

func endpoint(c discoveryv1.EndpointConditions, addrs ...string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: addrs, Conditions: c}
}

func l4(proto string, port uint16) *schema.L4Addr {
	return &schema.L4Addr{Protocol: proto, Port: port}
}

// wantService is the expected export of newService with the given frontends
// and backends.
func wantService(fe, be map[string]schema.PortConfiguration) schema.ClusterService {
	return schema.ClusterService{
		Cluster:         testCluster,
		Namespace:       testNS,
		Name:            testName,
		Frontends:       fe,
		Backends:        be,
		Labels:          map[string]string{"team": "web"},
		Selector:        map[string]string{"app": "cart"},
		Shared:          true,
		IncludeExternal: true,
		ClusterID:       testClusterID,
	}
}

// checkRoundTrip proves that cs is accepted by the schema decoder of its key
// and decodes back unchanged.
func checkRoundTrip(t *testing.T, cs schema.ClusterService) {
	t.Helper()
	data, err := cs.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	got, err := schema.DecodeClusterService(schema.DefaultPaths().Service(cs.Cluster, cs.Namespace, cs.Name), data)
	if err != nil {
		t.Fatalf("schema decoder rejects the built service: %v\n%s", err, data)
	}
	if d := cmp.Diff(cs, got); d != "" {
		t.Errorf("round trip changed the service (-built +decoded):\n%s", d)
	}
}

// checkErrors compares error messages and checks that every error matches
// sentinel.
func checkErrors(t *testing.T, errs []error, sentinel error, want []string) {
	t.Helper()
	got := make([]string, 0, len(errs))
	for _, err := range errs {
		got = append(got, err.Error())
		if !errors.Is(err, sentinel) {
			t.Errorf("errors.Is(%q, %v) = false", err, sentinel)
		}
	}
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("errors (-want +got):\n%s", d)
	}
}
