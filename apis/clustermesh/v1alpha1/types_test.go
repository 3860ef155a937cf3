package v1alpha1

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestCRDsDecodeAndMatchTypes(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	want := map[string]runtime.Object{
		IdentityResource.Resource:                 &Identity{},
		NetworkPolicyResource.Resource:            &ClusterMeshNetworkPolicy{},
		ClusterwideNetworkPolicyResource.Resource: &ClusterMeshClusterwideNetworkPolicy{},
	}
	if len(crds) != len(want) {
		t.Fatalf("%d CRDs, want %d", len(crds), len(want))
	}
	for _, crd := range crds {
		obj, ok := want[crd.Spec.Names.Plural]
		if !ok || crd.Spec.Group != GroupName {
			t.Fatalf("unexpected CRD %s", crd.Name)
		}
		gvks, _, err := s.ObjectKinds(obj)
		if err != nil || gvks[0].Kind != crd.Spec.Names.Kind {
			t.Fatalf("scheme kind %v (%v) differs from the CRD's %q", gvks, err, crd.Spec.Names.Kind)
		}
	}
}

func TestDeepCopyIsDeep(t *testing.T) {
	in := &Identity{ObjectMeta: metav1.ObjectMeta{Name: "65536", Labels: map[string]string{ClusterLabel: "c1"}}, SecurityLabels: []string{"k8s:app=a"}}
	out := in.DeepCopyObject().(*Identity)
	out.SecurityLabels[0] = "changed"
	out.Labels[ClusterLabel] = "changed"
	if in.SecurityLabels[0] != "k8s:app=a" || in.Labels[ClusterLabel] != "c1" {
		t.Fatalf("deep copy shares memory with the original: %+v", in)
	}
	list := &IdentityList{Items: []Identity{*in}}
	lc := list.DeepCopyObject().(*IdentityList)
	lc.Items[0].SecurityLabels[0] = "x"
	if list.Items[0].SecurityLabels[0] != "k8s:app=a" {
		t.Fatal("list deep copy shares memory")
	}
}
