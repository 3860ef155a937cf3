package netpol

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Builders of the suite's policies, named after what they set.

type npOption func(*networkingv1.NetworkPolicy)

// netpol is the policy name in ns selecting the pods with labels (all of
// them for none).
func netpol(ns, name string, labels map[string]string, opts ...npOption) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: labels}}}
	for _, o := range opts {
		o(np)
	}
	return np
}

// ingress adds rules and, the first time, the Ingress policy type (as the
// suite's SetSpecIngressRules): ingress() alone isolates for ingress.
func ingress(rules ...networkingv1.NetworkPolicyIngressRule) npOption {
	return func(np *networkingv1.NetworkPolicy) {
		if np.Spec.Ingress == nil {
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{}
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		}
		np.Spec.Ingress = append(np.Spec.Ingress, rules...)
	}
}

// egress is ingress for egress rules.
func egress(rules ...networkingv1.NetworkPolicyEgressRule) npOption {
	return func(np *networkingv1.NetworkPolicy) {
		if np.Spec.Egress == nil {
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{}
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
		np.Spec.Egress = append(np.Spec.Egress, rules...)
	}
}

func from(peers ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: peers}
}

func to(peers ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: peers}
}

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func sel(kv ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: labels(kv...)}
}

func selExpr(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

// The suite's namespace label (set by Kubernetes on every namespace).
const nsKey = "kubernetes.io/metadata.name"

func pods(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: s}
}

func nss(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: s}
}

func podsInNs(p, n *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: p, NamespaceSelector: n}
}

func ipBlock(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

// port is a numbered port, with a protocol unless proto is "".
func port(n int32, proto string) networkingv1.NetworkPolicyPort {
	p := networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{IntVal: n}}
	if proto != "" {
		pr := corev1.Protocol(proto)
		p.Protocol = &pr
	}
	return p
}

// namedPort is a named port, with a protocol unless proto is "".
func namedPort(name, proto string) networkingv1.NetworkPolicyPort {
	p := port(0, proto)
	p.Port = &intstr.IntOrString{Type: intstr.String, StrVal: name}
	return p
}

// protoOnly is a port entry with a protocol and no port.
func protoOnly(proto string) networkingv1.NetworkPolicyPort {
	p := port(0, proto)
	p.Port = nil
	return p
}

func withPorts(r networkingv1.NetworkPolicyIngressRule, ps ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyIngressRule {
	r.Ports = append(r.Ports, ps...)
	return r
}

func withEgressPorts(r networkingv1.NetworkPolicyEgressRule, ps ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyEgressRule {
	r.Ports = append(r.Ports, ps...)
	return r
}

// hostCIDR is the pod's single-address prefix of family (/32, /128), as
// the suite writes it from the pod's IP.
func (w *world) hostCIDR(p podName, family int) string {
	a := w.byKey[p].addr(family)
	return netip.PrefixFrom(a, a.BitLen()).String()
}

// largeCIDR is the suite's makeLargeCIDRForIP: the /4 holding the pod's
// address.
func (w *world) largeCIDR(p podName, family int) string {
	a := w.byKey[p].addr(family)
	return netip.PrefixFrom(a, 4).Masked().String()
}
