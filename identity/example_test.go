package identity_test

import (
	"fmt"

	"github.com/clustermesh/clustermesh/identity"
)

func ExamplePodLabels() {
	ls := identity.PodLabels("c3", "bar", "",
		map[string]string{"app": "baz"},
		nil,
	)
	fmt.Println(ls.SortedKVStoreString())

	back, err := identity.ParseKVStoreLabels(ls.SortedKVStoreString())
	fmt.Println(back.Equal(ls), err)

	sel, err := identity.NewSelector(map[string]string{"app": "baz"}, nil)
	fmt.Println(sel, sel.HasKey(identity.ClusterLabelKey), sel.Matches(ls), err)
	// Output:
	// k8s:app=baz;k8s:io.cilium.k8s.policy.cluster=c3;k8s:io.kubernetes.pod.namespace=bar;
	// true <nil>
	// app=baz false true <nil>
}
