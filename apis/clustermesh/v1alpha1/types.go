package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the project's API group.
const GroupName = "clustermesh.io"

// SchemeGroupVersion is the group and version of this package.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// IdentityResource is the identities resource of this group and version.
var IdentityResource = SchemeGroupVersion.WithResource("identities")

// Labels the clustermesh-apiserver sets on each Identity.
const (
	// ClusterLabel names the cluster that allocated the identity.
	ClusterLabel = "clustermesh.io/cluster"
)

// Identity is an allocated security identity: a number for a label set.
type Identity struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// SecurityLabels are the identity's labels as source:key=value strings,
	// sorted as in the etcd kvstore form.
	SecurityLabels []string `json:"securityLabels"`
}

// IdentityList is a list of Identity.
type IdentityList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Identity `json:"items"`
}

// AddToScheme registers the group's types.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &Identity{}, &IdentityList{},
		&ClusterMeshNetworkPolicy{}, &ClusterMeshNetworkPolicyList{},
		&ClusterMeshClusterwideNetworkPolicy{}, &ClusterMeshClusterwideNetworkPolicyList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}

// DeepCopyInto copies in into out.
func (in *Identity) DeepCopyInto(out *Identity) {
	*out = *in
	out.TypeMeta = in.TypeMeta
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if in.SecurityLabels != nil {
		out.SecurityLabels = append([]string(nil), in.SecurityLabels...)
	}
}

// DeepCopy returns a deep copy.
func (in *Identity) DeepCopy() *Identity {
	if in == nil {
		return nil
	}
	out := new(Identity)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *Identity) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopyObject implements runtime.Object.
func (in *IdentityList) DeepCopyObject() runtime.Object {
	if in == nil {
		return nil
	}
	out := &IdentityList{TypeMeta: in.TypeMeta}
	in.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]Identity, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}
