package v1alpha1

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The project's network policies: CiliumNetworkPolicy's shape (cilium.io/v2)
// under this group, so that a CiliumNetworkPolicy manifest works after
// changing only its apiVersion and kind.

// NetworkPolicyResource and ClusterwideNetworkPolicyResource are the
// policy resources of this group and version.
var (
	NetworkPolicyResource            = SchemeGroupVersion.WithResource("clustermeshnetworkpolicies")
	ClusterwideNetworkPolicyResource = SchemeGroupVersion.WithResource("clustermeshclusterwidenetworkpolicies")
)

// ClusterMeshNetworkPolicy is a namespaced network policy: its selectors
// select endpoints of its own namespace unless they name one.
type ClusterMeshNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is one rule; Specs more. Both may be set.
	Spec  *PolicyRule  `json:"spec,omitempty"`
	Specs []PolicyRule `json:"specs,omitempty"`
}

// ClusterMeshNetworkPolicyList is a list of ClusterMeshNetworkPolicy.
type ClusterMeshNetworkPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterMeshNetworkPolicy `json:"items"`
}

// ClusterMeshClusterwideNetworkPolicy is the cluster-scoped variant: its
// selectors are not limited to a namespace.
type ClusterMeshClusterwideNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec  *PolicyRule  `json:"spec,omitempty"`
	Specs []PolicyRule `json:"specs,omitempty"`
}

// ClusterMeshClusterwideNetworkPolicyList is a list of
// ClusterMeshClusterwideNetworkPolicy.
type ClusterMeshClusterwideNetworkPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterMeshClusterwideNetworkPolicy `json:"items"`
}

// PolicyRule is one rule: the endpoints it applies to and what they may
// receive and send. A direction whose field is present (even as an empty
// list) is enforced: what no rule allows is denied.
type PolicyRule struct {
	Description      string                `json:"description,omitempty"`
	EndpointSelector *metav1.LabelSelector `json:"endpointSelector,omitempty"`
	Ingress          []IngressRule         `json:"ingress,omitempty"`
	IngressDeny      []IngressRule         `json:"ingressDeny,omitempty"`
	Egress           []EgressRule          `json:"egress,omitempty"`
	EgressDeny       []EgressRule          `json:"egressDeny,omitempty"`
}

// IngressRule says which peers may reach the endpoints, on which ports. A
// rule with ports but no peer applies to every peer; a rule with neither
// allows nothing.
type IngressRule struct {
	FromEndpoints []metav1.LabelSelector `json:"fromEndpoints,omitempty"`
	FromEntities  []string               `json:"fromEntities,omitempty"`
	FromCIDR      []string               `json:"fromCIDR,omitempty"`
	FromCIDRSet   []CIDRRule             `json:"fromCIDRSet,omitempty"`
	ToPorts       []PortRule             `json:"toPorts,omitempty"`
}

// EgressRule says which peers the endpoints may reach, on which ports.
type EgressRule struct {
	ToEndpoints []metav1.LabelSelector `json:"toEndpoints,omitempty"`
	ToEntities  []string               `json:"toEntities,omitempty"`
	ToCIDR      []string               `json:"toCIDR,omitempty"`
	ToCIDRSet   []CIDRRule             `json:"toCIDRSet,omitempty"`
	ToPorts     []PortRule             `json:"toPorts,omitempty"`
}

// CIDRRule is a prefix minus exceptions.
type CIDRRule struct {
	Cidr        string   `json:"cidr"`
	ExceptCIDRs []string `json:"except,omitempty"`
}

// PortRule lists ports.
type PortRule struct {
	Ports []PortProtocol `json:"ports,omitempty"`
}

// PortProtocol is a port (a number, or a named container port), an
// optional end of range, and a protocol (TCP, UDP, SCTP or ANY; default
// ANY as in Cilium).
type PortProtocol struct {
	Port     string `json:"port"`
	EndPort  int32  `json:"endPort,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

// Rules returns Spec and Specs as one list.
func Rules(spec *PolicyRule, specs []PolicyRule) []PolicyRule {
	out := make([]PolicyRule, 0, len(specs)+1)
	if spec != nil {
		out = append(out, *spec)
	}
	return append(out, specs...)
}

// deepCopyJSON copies in into out through JSON: the policy types are plain
// JSON data, and a hand-written copy of every nested selector would be a
// place for bugs.
func deepCopyJSON(in, out any) {
	b, err := json.Marshal(in)
	if err != nil {
		return
	}
	_ = json.Unmarshal(b, out)
}

// DeepCopyObject implements runtime.Object.
func (in *ClusterMeshNetworkPolicy) DeepCopyObject() runtime.Object {
	out := &ClusterMeshNetworkPolicy{}
	deepCopyJSON(in, out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *ClusterMeshNetworkPolicyList) DeepCopyObject() runtime.Object {
	out := &ClusterMeshNetworkPolicyList{}
	deepCopyJSON(in, out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *ClusterMeshClusterwideNetworkPolicy) DeepCopyObject() runtime.Object {
	out := &ClusterMeshClusterwideNetworkPolicy{}
	deepCopyJSON(in, out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *ClusterMeshClusterwideNetworkPolicyList) DeepCopyObject() runtime.Object {
	out := &ClusterMeshClusterwideNetworkPolicyList{}
	deepCopyJSON(in, out)
	return out
}
