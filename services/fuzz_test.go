package services

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FuzzBuildClusterService checks that no input panics and that whatever is
// built passes the schema decoder.
func FuzzBuildClusterService(f *testing.F) {
	f.Add("cart", "10.96.0.10", "http", "TCP", int32(80), "10.0.1.1", "UDP", int32(53), "true", "local", uint32(1))
	f.Add("a/b", "None", "", "", int32(0), "fe80::1%eth0", "", int32(-1), "yes", "far", uint32(0))
	f.Add("x", "::ffff:1.2.3.4", "", "SCTP", int32(65535), "FD00::1", "sctp", int32(70000), "", "NONE", uint32(512))
	f.Add("0", "0", "\xff", "", int32(7), "1.0.0.0", "", int32(5), "0", "0", uint32(1)) // port name not UTF-8
	f.Fuzz(func(t *testing.T, name, clusterIP, portName, proto string, port int32,
		addr, epProto string, epPort int32, global, affinity string, clusterID uint32,
	) {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: name, Annotations: map[string]string{
				AnnotationGlobal: global, AnnotationSharedLegacy: global, AnnotationAffinity: affinity,
			}},
			Spec: corev1.ServiceSpec{
				ClusterIPs: []string{clusterIP, clusterIP},
				Ports:      []corev1.ServicePort{{Name: portName, Protocol: corev1.Protocol(proto), Port: port}},
			},
		}
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "s", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			Endpoints:  []discoveryv1.Endpoint{{Addresses: []string{addr}}, {}},
			Ports: []discoveryv1.EndpointPort{
				{Name: new(portName), Protocol: new(corev1.Protocol(epProto)), Port: new(epPort)},
				{},
			},
		}
		ParseAnnotations(svc)
		cs, errs := BuildClusterService(testCluster, clusterID, svc, []*discoveryv1.EndpointSlice{slice, nil})
		if errors.Is(errors.Join(errs...), ErrNotExportable) {
			return
		}
		checkRoundTrip(t, cs)
	})
}
