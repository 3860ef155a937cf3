package netpol

import (
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// scenario is one test of the upstream suite (named as there): steps of
// policies and the truth tables expected once they are in place.
type scenario struct {
	name  string
	steps []step
}

// step is the complete set of policies present, the labels of pods and
// namespaces where they differ from the model's, and the probes to make.
type step struct {
	policies func(w *world, family int) []*networkingv1.NetworkPolicy
	// podLabels and nsLabels replace, for this step, the labels of the
	// pods and namespaces they name (a relabel, as the suite's
	// AddPodLabels and AddNamespaceLabel: the pod keeps its identity
	// number, the engine sees its new labels).
	podLabels map[podName]map[string]string
	nsLabels  map[string]map[string]string
	probes    []probeSpec
}

// probeSpec is a port and protocol, and how the expected truth table
// differs from "every pair connects".
type probeSpec struct {
	port   uint16
	proto  string
	expect func(r *reachability)
}

// fixed is a step's policies that do not depend on the world.
func fixed(nps ...*networkingv1.NetworkPolicy) func(*world, int) []*networkingv1.NetworkPolicy {
	return func(*world, int) []*networkingv1.NetworkPolicy { return nps }
}

func tcp(port uint16, expect func(r *reachability)) probeSpec {
	return probeSpec{port: port, proto: "TCP", expect: expect}
}

func udp(port uint16, expect func(r *reachability)) probeSpec {
	return probeSpec{port: port, proto: "UDP", expect: expect}
}

func allConnect(*reachability) {}

// oneStep is a scenario of one step.
func oneStep(name string, policies func(*world, int) []*networkingv1.NetworkPolicy, probes ...probeSpec) scenario {
	return scenario{name: name, steps: []step{{policies: policies, probes: probes}}}
}

// scenarios are the tests of k8s.io/kubernetes v1.37
// test/e2e/network/netpol/network_policy.go ("NetworkPolicy between server
// and client"), with their policies and expectations, over the full model
// (each upstream test creates a subset of its pods; expectations are about
// pods, so the other pods only add pairs whose expectation the same calls
// set).
var scenarios = []scenario{
	oneStep("should support a 'default-deny-ingress' policy",
		fixed(netpol("x", "deny-ingress", nil, ingress())),
		tcp(80, func(r *reachability) { r.expectPeer(peer{}, peer{ns: "x"}, false) })),

	oneStep("should support a 'default-deny-all' policy",
		fixed(netpol("x", "deny-all", nil, ingress(), egress())),
		tcp(80, func(r *reachability) {
			r.expectPeer(peer{}, peer{ns: "x"}, false)
			r.expectPeer(peer{ns: "x"}, peer{}, false)
		})),

	oneStep("should enforce policy to allow traffic from pods within server namespace based on PodSelector",
		fixed(netpol("x", "x-a-allows-x-b", labels("pod", "a"), ingress(from(pods(sel("pod", "b")))))),
		tcp(80, func(r *reachability) {
			r.expectAllIngress("x/a", false)
			r.expect("x/b", "x/a", true)
		})),

	oneStep("should enforce policy to allow ingress traffic for a target",
		fixed(netpol("x", "deny-all", nil, ingress()),
			netpol("x", "allow-all-to-a", labels("pod", "a"), ingress(from(podsInNs(sel(), sel()))))),
		tcp(80, func(r *reachability) {
			r.expectAllIngress("x/a", true)
			r.expectAllIngress("x/b", false)
			r.expectAllIngress("x/c", false)
		})),

	oneStep("should enforce policy to allow ingress traffic from pods in all namespaces",
		fixed(netpol("x", "allow-from-another-ns", labels("pod", "a"), ingress(from(nss(sel()))))),
		tcp(80, allConnect)),

	oneStep("should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
		fixed(netpol("x", "allow-client-a-via-ns-selector", labels("pod", "a"), ingress(from(nss(sel(nsKey, "y")))))),
		tcp(80, func(r *reachability) {
			r.expectPeer(peer{ns: "x"}, peer{ns: "x", pod: "a"}, false)
			r.expectPeer(peer{ns: "z"}, peer{ns: "x", pod: "a"}, false)
		})),

	oneStep("should enforce policy based on PodSelector with MatchExpressions",
		fixed(netpol("x", "x-a-allows-x-b", labels("pod", "a"), ingress(from(pods(selExpr("pod", metav1.LabelSelectorOpIn, "b")))))),
		tcp(80, func(r *reachability) {
			r.expectAllIngress("x/a", false)
			r.expect("x/b", "x/a", true)
		})),

	oneStep("should enforce policy based on NamespaceSelector with MatchExpressions",
		fixed(netpol("x", "allow-ns-y-match-selector", labels("pod", "a"), ingress(from(nss(selExpr(nsKey, metav1.LabelSelectorOpIn, "y")))))),
		tcp(80, func(r *reachability) {
			r.expectPeer(peer{ns: "x"}, peer{ns: "x", pod: "a"}, false)
			r.expectPeer(peer{ns: "z"}, peer{ns: "x", pod: "a"}, false)
		})),

	oneStep("should enforce policy based on PodSelector or NamespaceSelector",
		fixed(netpol("x", "allow-ns-y-match-selector", labels("pod", "a"), ingress(from(
			nss(selExpr(nsKey, metav1.LabelSelectorOpNotIn, "x")), pods(sel("pod", "b")))))),
		tcp(80, func(r *reachability) {
			r.expect("x/a", "x/a", false)
			r.expect("x/c", "x/a", false)
		})),

	oneStep("should enforce policy based on PodSelector and NamespaceSelector",
		fixed(netpol("x", "allow-ns-y-podselector-and-nsselector", labels("pod", "a"), ingress(from(
			podsInNs(sel("pod", "b"), selExpr(nsKey, metav1.LabelSelectorOpNotIn, "x")))))),
		tcp(80, func(r *reachability) {
			r.expectAllIngress("x/a", false)
			r.expect("y/b", "x/a", true)
			r.expect("z/b", "x/a", true)
		})),

	oneStep("should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
		fixed(netpol("x", "allow-ns-y-z-pod-b-c", labels("pod", "a"), ingress(from(
			podsInNs(selExpr("pod", metav1.LabelSelectorOpIn, "b", "c"), selExpr(nsKey, metav1.LabelSelectorOpNotIn, "x")))))),
		tcp(80, func(r *reachability) {
			r.expectPeer(peer{ns: "x"}, peer{ns: "x", pod: "a"}, false)
			r.expect("y/a", "x/a", false)
			r.expect("z/a", "x/a", false)
		})),

	oneStep("should enforce policy based on any PodSelectors",
		fixed(netpol("x", "allow-ns-x-pod-b-c", labels("pod", "a"), ingress(from(pods(sel("pod", "b")), pods(sel("pod", "c")))))),
		tcp(80, func(r *reachability) {
			r.expectAllIngress("x/a", false)
			r.expect("x/b", "x/a", true)
			r.expect("x/c", "x/a", true)
		})),

	oneStep("should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
		fixed(netpol("x", "allow-ns-y-pod-a-via-namespace-pod-selector", labels("pod", "a"), ingress(from(podsInNs(sel("pod", "a"), sel(nsKey, "y")))))),
		tcp(80, func(r *reachability) {
			r.expectAllIngress("x/a", false)
			r.expect("y/a", "x/a", true)
		})),

	oneStep("should enforce policy based on Ports",
		fixed(netpol("x", "allow-client-a-via-ns-selector", labels("pod", "a"), ingress(withPorts(from(nss(sel(nsKey, "y"))), port(81, "TCP"))))),
		tcp(81, func(r *reachability) {
			r.expectPeer(peer{ns: "x"}, peer{ns: "x", pod: "a"}, false)
			r.expectPeer(peer{ns: "y"}, peer{ns: "x", pod: "a"}, true)
			r.expectPeer(peer{ns: "z"}, peer{ns: "x", pod: "a"}, false)
		})),

	{name: "should enforce multiple, stacked policies with overlapping podSelectors", steps: []step{
		{policies: fixed(netpol("x", "allow-client-a-via-ns-selector", labels("pod", "a"), ingress(withPorts(from(nss(sel(nsKey, "y"))), port(81, "TCP"))))),
			probes: []probeSpec{tcp(81, expectOnlyYToXA), tcp(80, func(r *reachability) { r.expectAllIngress("x/a", false) })}},
		{policies: fixed(netpol("x", "allow-client-a-via-ns-selector", labels("pod", "a"), ingress(withPorts(from(nss(sel(nsKey, "y"))), port(81, "TCP")))),
			netpol("x", "allow-client-a-via-ns-selector-80", labels("pod", "a"), ingress(withPorts(from(nss(sel(nsKey, "y"))), port(80, "TCP"))))),
			probes: []probeSpec{tcp(80, expectOnlyYToXA)}},
	}},

	oneStep("should support allow-all policy",
		fixed(netpol("x", "allow-all", nil, ingress(networkingv1.NetworkPolicyIngressRule{}))),
		tcp(80, allConnect), tcp(81, allConnect)),

	oneStep("should allow ingress access on one named port",
		fixed(netpol("x", "allow-all", nil, ingress(withPorts(networkingv1.NetworkPolicyIngressRule{}, namedPort("serve-81-tcp", ""))))),
		tcp(81, allConnect),
		tcp(80, func(r *reachability) { r.expectPeer(peer{}, peer{ns: "x"}, false) })),

	oneStep("should allow ingress access from namespace on one named port",
		fixed(netpol("x", "allow-client-a-via-ns-selector-80", labels("pod", "a"), ingress(withPorts(from(nss(sel(nsKey, "y"))), namedPort("serve-80-tcp", "TCP"))))),
		tcp(80, func(r *reachability) {
			r.expectPeer(peer{ns: "x"}, peer{ns: "x", pod: "a"}, false)
			r.expectPeer(peer{ns: "z"}, peer{ns: "x", pod: "a"}, false)
		}),
		tcp(81, func(r *reachability) { r.expectAllIngress("x/a", false) })),

	oneStep("should allow egress access on one named port",
		fixed(netpol("x", "allow-egress", nil, egress(withEgressPorts(networkingv1.NetworkPolicyEgressRule{}, namedPort("serve-80-tcp", ""))))),
		tcp(80, allConnect),
		tcp(81, func(r *reachability) { r.expectPeer(peer{ns: "x"}, peer{}, false) })),

	oneStep("should not allow all ports if it cannot limit to the requested port",
		fixed(netpol("x", "allow-ingress-on-nonexistent-port", labels("pod", "a"), ingress(withPorts(networkingv1.NetworkPolicyIngressRule{}, namedPort("no-such-port", "TCP"))))),
		tcp(80, func(r *reachability) { r.expectAllIngress("x/a", false) })),

	{name: "should enforce updated policy", steps: []step{
		{policies: fixed(netpol("x", "allow-all-mutate-to-deny-all", nil, ingress(networkingv1.NetworkPolicyIngressRule{}))),
			probes: []probeSpec{tcp(81, allConnect)}},
		{policies: fixed(netpol("x", "allow-all-mutate-to-deny-all", nil, ingress())),
			probes: []probeSpec{tcp(81, func(r *reachability) { r.expectPeer(peer{}, peer{ns: "x"}, false) })}},
	}},

	oneStep("should deny egress from pods based on PodSelector",
		fixed(netpol("x", "deny-egress-pod-a", labels("pod", "a"), egress())),
		tcp(80, func(r *reachability) { r.expectAllEgress("x/a", false) })),

	oneStep("should deny egress from all pods in a namespace",
		fixed(netpol("x", "deny-egress-ns-x", nil, egress())),
		tcp(80, func(r *reachability) { r.expectPeer(peer{ns: "x"}, peer{}, false) })),

	oneStep("should not allow access by TCP when a policy specifies only UDP",
		fixed(netpol("x", "allow-only-udp-ingress-on-port-81", labels("pod", "a"), ingress(withPorts(networkingv1.NetworkPolicyIngressRule{}, port(81, "UDP"))))),
		tcp(81, func(r *reachability) { r.expectAllIngress("x/a", false) }),
		udp(81, allConnect)),

	oneStep("should enforce ingress policy allowing any port traffic to a server on a specific protocol",
		fixed(netpol("x", "allow-ingress-by-proto", labels("pod", "a"), ingress(withPorts(networkingv1.NetworkPolicyIngressRule{}, protoOnly("TCP"))))),
		tcp(80, allConnect),
		udp(80, func(r *reachability) { r.expectAllIngress("x/a", false) })),

	oneStep("should allow egress access to server in CIDR block",
		func(w *world, family int) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{netpol("x", "allow-client-a-via-cidr-egress-rule", labels("pod", "a"),
				egress(to(ipBlock(w.hostCIDR("y/b", family)))))}
		},
		tcp(80, func(r *reachability) {
			r.expectAllEgress("x/a", false)
			r.expect("x/a", "y/b", true)
		})),

	oneStep("should enforce except clause while egress access to server in CIDR block",
		func(w *world, family int) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{netpol("x", "allow-client-a-via-cidr-egress-rule", labels("pod", "a"),
				egress(to(ipBlock(w.largeCIDR("x/b", family), w.hostCIDR("x/b", family)))))}
		},
		tcp(80, func(r *reachability) { r.expect("x/a", "x/b", false) })),

	{name: "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed", steps: []step{
		{policies: func(w *world, family int) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{netpol("x", "allow-client-a-via-cidr-egress-rule", labels("pod", "a"),
				egress(to(ipBlock(w.largeCIDR("x/b", family), w.hostCIDR("x/b", family)))))}
		}, probes: []probeSpec{tcp(80, func(r *reachability) { r.expect("x/a", "x/b", false) })}},
		{policies: func(w *world, family int) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{netpol("x", "allow-client-a-via-cidr-egress-rule", labels("pod", "a"),
				egress(to(ipBlock(w.hostCIDR("x/b", family)))))}
		}, probes: []probeSpec{tcp(80, func(r *reachability) {
			r.expectAllEgress("x/a", false)
			r.expect("x/a", "x/b", true)
		})}},
	}},
}

// expectOnlyYToXA: x/a accepts only namespace y.
func expectOnlyYToXA(r *reachability) {
	r.expectPeer(peer{ns: "x"}, peer{ns: "x", pod: "a"}, false)
	r.expectPeer(peer{ns: "y"}, peer{ns: "x", pod: "a"}, true)
	r.expectPeer(peer{ns: "z"}, peer{ns: "x", pod: "a"}, false)
}
