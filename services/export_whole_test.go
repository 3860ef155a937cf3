package services

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// keySegmentErr is the expected error for a service key that the schema
// rejects; the schema's own wording is not this package's to test.
func keySegmentErr(t *testing.T, cluster, ns, name string) string {
	t.Helper()
	_, _, _, err := schema.ParseServiceKey(schema.DefaultPaths().Service(cluster, ns, name))
	if err == nil {
		t.Fatalf("schema accepts the service key of %q %q %q", cluster, ns, name)
	}
	return fmt.Sprintf("cluster %q, namespace and name must each be one etcd key segment: %v", cluster, err)
}

func TestBuildClusterServiceNotExportable(t *testing.T) {
	svc := newService([]string{"10.96.0.10"}, svcPort("http", corev1.ProtocolTCP, 80))
	with := func(f func(*corev1.Service)) *corev1.Service { s := svc.DeepCopy(); f(s); return s }
	const pre = "service shop/cart: not exported: "
	tests := []struct {
		name      string
		cluster   string
		clusterID uint32
		svc       *corev1.Service
		errs      []string
	}{
		{name: "nil service", cluster: testCluster, clusterID: 1, svc: nil, errs: []string{"service is nil: not exported"}},
		{
			name: "cluster ID 0", cluster: testCluster, clusterID: 0, svc: svc,
			errs: []string{pre + "cluster ID 0 is out of range 1..511; configure a valid cluster ID"},
		},
		{
			name: "cluster ID too large", cluster: testCluster, clusterID: 512, svc: svc,
			errs: []string{pre + "cluster ID 512 is out of range 1..511; configure a valid cluster ID"},
		},
		{
			name: "external name", cluster: testCluster, clusterID: 511,
			svc: with(func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeExternalName
				s.Spec.ExternalName = "db.example.com"
			}),
			errs: []string{pre + "type ExternalName has no cluster IP or endpoints to share; remove the global annotation"},
		},
		{
			name: "empty cluster and bad ID together", cluster: "", clusterID: 0, svc: svc,
			errs: []string{
				pre + "cluster ID 0 is out of range 1..511; configure a valid cluster ID",
				pre + keySegmentErr(t, "", "shop", "cart"),
			},
		},
		{
			name: "empty namespace", cluster: testCluster, clusterID: 1,
			svc:  with(func(s *corev1.Service) { s.Namespace = "" }),
			errs: []string{"service /cart: not exported: " + keySegmentErr(t, testCluster, "", "cart")},
		},
		{
			name: "slash in name", cluster: testCluster, clusterID: 1,
			svc:  with(func(s *corev1.Service) { s.Name = "a/b" }),
			errs: []string{"service shop/a/b: not exported: " + keySegmentErr(t, testCluster, "shop", "a/b")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := BuildClusterService(tt.cluster, tt.clusterID, tt.svc, nil)
			if d := cmp.Diff(schema.ClusterService{}, got); d != "" {
				t.Errorf("want the zero ClusterService (-want +got):\n%s", d)
			}
			checkErrors(t, errs, ErrNotExportable, tt.errs)
		})
	}
}

// TestBuildClusterServiceNoAliasing checks that inputs are not modified and
// that the result shares no map with them or with itself.
func TestBuildClusterServiceNoAliasing(t *testing.T) {
	svc := newService([]string{"10.96.0.10", "fd00::a"}, svcPort("http", corev1.ProtocolTCP, 80))
	slice := newSlice("cart-a", []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)}, ready("10.0.1.1"))
	svcBefore, sliceBefore := svc.DeepCopy(), slice.DeepCopy()

	cs, errs := BuildClusterService(testCluster, testClusterID, svc, []*discoveryv1.EndpointSlice{slice, slice})
	if len(errs) != 0 {
		t.Fatalf("unexpected errors: %v", errs)
	}
	if d := cmp.Diff(svcBefore, svc); d != "" {
		t.Errorf("service modified (-before +after):\n%s", d)
	}
	if d := cmp.Diff(sliceBefore, slice); d != "" {
		t.Errorf("endpointslice modified (-before +after):\n%s", d)
	}
	cs.Labels["team"] = "changed"
	cs.Selector["app"] = "changed"
	cs.Frontends["10.96.0.10"]["http"].Port = 1
	if svc.Labels["team"] != "web" || svc.Spec.Selector["app"] != "cart" {
		t.Error("result labels or selector alias the service's")
	}
	if got := cs.Frontends["fd00::a"]["http"].Port; got != 80 {
		t.Errorf("frontends share ports: fd00::a port = %d after changing 10.96.0.10", got)
	}
}
