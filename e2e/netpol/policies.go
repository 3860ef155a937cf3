package netpol

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Builders of the suite's policies, named after what they set.

// NsKey is the namespace label Kubernetes sets on every namespace.
const NsKey = "kubernetes.io/metadata.name"

// Option sets a part of a NetworkPolicy.
type Option func(*networkingv1.NetworkPolicy)

// NetPol is the policy name in ns selecting the pods with labels (all of
// them for none).
func NetPol(ns, name string, labels map[string]string, opts ...Option) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: labels}}}
	for _, o := range opts {
		o(np)
	}
	return np
}

// Ingress adds rules and, the first time, the Ingress policy type (as the
// suite's SetSpecIngressRules): Ingress() alone isolates for ingress.
func Ingress(rules ...networkingv1.NetworkPolicyIngressRule) Option {
	return func(np *networkingv1.NetworkPolicy) {
		if np.Spec.Ingress == nil {
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{}
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		}
		np.Spec.Ingress = append(np.Spec.Ingress, rules...)
	}
}

// Egress is Ingress for egress rules.
func Egress(rules ...networkingv1.NetworkPolicyEgressRule) Option {
	return func(np *networkingv1.NetworkPolicy) {
		if np.Spec.Egress == nil {
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{}
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
		np.Spec.Egress = append(np.Spec.Egress, rules...)
	}
}

// PolicyTypes replaces the policy's types (set as upstream writes them).
func PolicyTypes(ts ...networkingv1.PolicyType) Option {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.PolicyTypes = ts }
}

// From is an ingress rule from peers.
func From(peers ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: peers}
}

// To is an egress rule to peers.
func To(peers ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: peers}
}

// Labels is the map of key, value pairs kv.
func Labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// Plus is a copy of m with the labels kv added.
func Plus(m map[string]string, kv ...string) map[string]string {
	out := maps.Clone(m)
	maps.Copy(out, Labels(kv...))
	return out
}

// Sel is a selector matching the labels kv.
func Sel(kv ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: Labels(kv...)}
}

// SelExpr is a selector of one expression.
func SelExpr(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

// PodSel is a peer by pod selector.
func PodSel(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: s}
}

// NsSel is a peer by namespace selector.
func NsSel(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: s}
}

// PodNsSel is a peer by pod and namespace selector (both must match).
func PodNsSel(p, n *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: p, NamespaceSelector: n}
}

// IPBlock is a peer by address block.
func IPBlock(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

// PortRule is a numbered port, with a protocol unless proto is "".
func PortRule(n int32, proto string) networkingv1.NetworkPolicyPort {
	p := networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{IntVal: n}}
	if proto != "" {
		pr := corev1.Protocol(proto)
		p.Protocol = &pr
	}
	return p
}

// NamedPortRule is a named port, with a protocol unless proto is "".
func NamedPortRule(name, proto string) networkingv1.NetworkPolicyPort {
	p := PortRule(0, proto)
	p.Port = &intstr.IntOrString{Type: intstr.String, StrVal: name}
	return p
}

// ProtoOnly is a port entry with a protocol and no port.
func ProtoOnly(proto string) networkingv1.NetworkPolicyPort {
	p := PortRule(0, proto)
	p.Port = nil
	return p
}

// WithPorts is the ingress rule r limited to ports ps.
func WithPorts(r networkingv1.NetworkPolicyIngressRule, ps ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyIngressRule {
	r.Ports = append(r.Ports, ps...)
	return r
}

// WithEgressPorts is the egress rule r limited to ports ps.
func WithEgressPorts(r networkingv1.NetworkPolicyEgressRule, ps ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyEgressRule {
	r.Ports = append(r.Ports, ps...)
	return r
}
