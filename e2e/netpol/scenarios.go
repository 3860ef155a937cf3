package netpol

import (
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenario is one test of the upstream suite (named as there): steps of
// policies and the truth tables expected once they are in place.
type Scenario struct {
	Name  string
	Steps []Step
}

// Step is the complete set of policies present, the labels of pods and
// namespaces where they differ from the model's, and the probes to make.
type Step struct {
	// Policies are the step's policies in a world, for the probes over
	// family (4 or 6): those with ipBlock peers name the world's
	// addresses of that family.
	Policies func(w Addrs, family int) []*networkingv1.NetworkPolicy
	// PodLabels and NsLabels replace, for this step, the labels of the
	// pods and namespaces they name (a relabel, as the suite's
	// AddPodLabels and AddNamespaceLabel).
	PodLabels map[Pod]map[string]string
	NsLabels  map[string]map[string]string
	Probes    []Probe
}

// Probe is a port and protocol, and how the expected truth table
// differs from "every pair connects".
type Probe struct {
	Port   uint16
	Proto  string // TCP or UDP
	Expect func(r *Reachability)
}

// Scenarios are every test of the upstream suite, in its order.
func Scenarios() []Scenario { return slices.Concat(scenarios, moreScenarios) }

// fixed is a step's policies that do not depend on the world.
func fixed(nps ...*networkingv1.NetworkPolicy) func(Addrs, int) []*networkingv1.NetworkPolicy {
	return func(Addrs, int) []*networkingv1.NetworkPolicy { return nps }
}

func tcp(port uint16, expect func(r *Reachability)) Probe {
	return Probe{Port: port, Proto: "TCP", Expect: expect}
}

func udp(port uint16, expect func(r *Reachability)) Probe {
	return Probe{Port: port, Proto: "UDP", Expect: expect}
}

func allConnect(*Reachability) {}

// oneStep is a scenario of one step.
func oneStep(name string, policies func(Addrs, int) []*networkingv1.NetworkPolicy, probes ...Probe) Scenario {
	return Scenario{Name: name, Steps: []Step{{Policies: policies, Probes: probes}}}
}

// scenarios are the tests of k8s.io/kubernetes v1.37
// test/e2e/network/netpol/network_policy.go ("NetworkPolicy between server
// and client"), with their policies and expectations, over the full model
// (each upstream test creates a subset of its pods; expectations are about
// pods, so the other pods only add pairs whose expectation the same calls
// set).
var scenarios = []Scenario{
	oneStep("should support a 'default-deny-ingress' policy",
		fixed(NetPol("x", "deny-ingress", nil, Ingress())),
		tcp(80, func(r *Reachability) { r.ExpectPeer(Peer{}, Peer{NS: "x"}, false) })),

	oneStep("should support a 'default-deny-all' policy",
		fixed(NetPol("x", "deny-all", nil, Ingress(), Egress())),
		tcp(80, func(r *Reachability) {
			r.ExpectPeer(Peer{}, Peer{NS: "x"}, false)
			r.ExpectPeer(Peer{NS: "x"}, Peer{}, false)
		})),

	oneStep("should enforce policy to allow traffic from pods within server namespace based on PodSelector",
		fixed(NetPol("x", "x-a-allows-x-b", Labels("pod", "a"), Ingress(From(PodSel(Sel("pod", "b")))))),
		tcp(80, func(r *Reachability) {
			r.ExpectAllIngress("x/a", false)
			r.Expect("x/b", "x/a", true)
		})),

	oneStep("should enforce policy to allow ingress traffic for a target",
		fixed(NetPol("x", "deny-all", nil, Ingress()),
			NetPol("x", "allow-all-to-a", Labels("pod", "a"), Ingress(From(PodNsSel(Sel(), Sel()))))),
		tcp(80, func(r *Reachability) {
			r.ExpectAllIngress("x/a", true)
			r.ExpectAllIngress("x/b", false)
			r.ExpectAllIngress("x/c", false)
		})),

	oneStep("should enforce policy to allow ingress traffic from pods in all namespaces",
		fixed(NetPol("x", "allow-from-another-ns", Labels("pod", "a"), Ingress(From(NsSel(Sel()))))),
		tcp(80, allConnect)),

	oneStep("should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
		fixed(NetPol("x", "allow-client-a-via-ns-selector", Labels("pod", "a"), Ingress(From(NsSel(Sel(NsKey, "y")))))),
		tcp(80, func(r *Reachability) {
			r.ExpectPeer(Peer{NS: "x"}, Peer{NS: "x", Pod: "a"}, false)
			r.ExpectPeer(Peer{NS: "z"}, Peer{NS: "x", Pod: "a"}, false)
		})),

	oneStep("should enforce policy based on PodSelector with MatchExpressions",
		fixed(NetPol("x", "x-a-allows-x-b", Labels("pod", "a"), Ingress(From(PodSel(SelExpr("pod", metav1.LabelSelectorOpIn, "b")))))),
		tcp(80, func(r *Reachability) {
			r.ExpectAllIngress("x/a", false)
			r.Expect("x/b", "x/a", true)
		})),

	oneStep("should enforce policy based on NamespaceSelector with MatchExpressions",
		fixed(NetPol("x", "allow-ns-y-match-selector", Labels("pod", "a"), Ingress(From(NsSel(SelExpr(NsKey, metav1.LabelSelectorOpIn, "y")))))),
		tcp(80, func(r *Reachability) {
			r.ExpectPeer(Peer{NS: "x"}, Peer{NS: "x", Pod: "a"}, false)
			r.ExpectPeer(Peer{NS: "z"}, Peer{NS: "x", Pod: "a"}, false)
		})),

	oneStep("should enforce policy based on PodSelector or NamespaceSelector",
		fixed(NetPol("x", "allow-ns-y-match-selector", Labels("pod", "a"), Ingress(From(
			NsSel(SelExpr(NsKey, metav1.LabelSelectorOpNotIn, "x")), PodSel(Sel("pod", "b")))))),
		tcp(80, func(r *Reachability) {
			r.Expect("x/a", "x/a", false)
			r.Expect("x/c", "x/a", false)
		})),

	oneStep("should enforce policy based on PodSelector and NamespaceSelector",
		fixed(NetPol("x", "allow-ns-y-podselector-and-nsselector", Labels("pod", "a"), Ingress(From(
			PodNsSel(Sel("pod", "b"), SelExpr(NsKey, metav1.LabelSelectorOpNotIn, "x")))))),
		tcp(80, func(r *Reachability) {
			r.ExpectAllIngress("x/a", false)
			r.Expect("y/b", "x/a", true)
			r.Expect("z/b", "x/a", true)
		})),

	oneStep("should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
		fixed(NetPol("x", "allow-ns-y-z-pod-b-c", Labels("pod", "a"), Ingress(From(
			PodNsSel(SelExpr("pod", metav1.LabelSelectorOpIn, "b", "c"), SelExpr(NsKey, metav1.LabelSelectorOpNotIn, "x")))))),
		tcp(80, func(r *Reachability) {
			r.ExpectPeer(Peer{NS: "x"}, Peer{NS: "x", Pod: "a"}, false)
			r.Expect("y/a", "x/a", false)
			r.Expect("z/a", "x/a", false)
		})),

	oneStep("should enforce policy based on any PodSelectors",
		fixed(NetPol("x", "allow-ns-x-pod-b-c", Labels("pod", "a"), Ingress(From(PodSel(Sel("pod", "b")), PodSel(Sel("pod", "c")))))),
		tcp(80, func(r *Reachability) {
			r.ExpectAllIngress("x/a", false)
			r.Expect("x/b", "x/a", true)
			r.Expect("x/c", "x/a", true)
		})),

	oneStep("should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
		fixed(NetPol("x", "allow-ns-y-pod-a-via-namespace-pod-selector", Labels("pod", "a"), Ingress(From(PodNsSel(Sel("pod", "a"), Sel(NsKey, "y")))))),
		tcp(80, func(r *Reachability) {
			r.ExpectAllIngress("x/a", false)
			r.Expect("y/a", "x/a", true)
		})),

	oneStep("should enforce policy based on Ports",
		fixed(NetPol("x", "allow-client-a-via-ns-selector", Labels("pod", "a"), Ingress(WithPorts(From(NsSel(Sel(NsKey, "y"))), PortRule(81, "TCP"))))),
		tcp(81, func(r *Reachability) {
			r.ExpectPeer(Peer{NS: "x"}, Peer{NS: "x", Pod: "a"}, false)
			r.ExpectPeer(Peer{NS: "y"}, Peer{NS: "x", Pod: "a"}, true)
			r.ExpectPeer(Peer{NS: "z"}, Peer{NS: "x", Pod: "a"}, false)
		})),

	{Name: "should enforce multiple, stacked policies with overlapping podSelectors", Steps: []Step{
		{Policies: fixed(NetPol("x", "allow-client-a-via-ns-selector", Labels("pod", "a"), Ingress(WithPorts(From(NsSel(Sel(NsKey, "y"))), PortRule(81, "TCP"))))),
			Probes: []Probe{tcp(81, expectOnlyYToXA), tcp(80, func(r *Reachability) { r.ExpectAllIngress("x/a", false) })}},
		{Policies: fixed(NetPol("x", "allow-client-a-via-ns-selector", Labels("pod", "a"), Ingress(WithPorts(From(NsSel(Sel(NsKey, "y"))), PortRule(81, "TCP")))),
			NetPol("x", "allow-client-a-via-ns-selector-80", Labels("pod", "a"), Ingress(WithPorts(From(NsSel(Sel(NsKey, "y"))), PortRule(80, "TCP"))))),
			Probes: []Probe{tcp(80, expectOnlyYToXA)}},
	}},

	oneStep("should support allow-all policy",
		fixed(NetPol("x", "allow-all", nil, Ingress(networkingv1.NetworkPolicyIngressRule{}))),
		tcp(80, allConnect), tcp(81, allConnect)),

	oneStep("should allow ingress access on one named port",
		fixed(NetPol("x", "allow-all", nil, Ingress(WithPorts(networkingv1.NetworkPolicyIngressRule{}, NamedPortRule("serve-81-tcp", ""))))),
		tcp(81, allConnect),
		tcp(80, func(r *Reachability) { r.ExpectPeer(Peer{}, Peer{NS: "x"}, false) })),

	oneStep("should allow ingress access from namespace on one named port",
		fixed(NetPol("x", "allow-client-a-via-ns-selector-80", Labels("pod", "a"), Ingress(WithPorts(From(NsSel(Sel(NsKey, "y"))), NamedPortRule("serve-80-tcp", "TCP"))))),
		tcp(80, func(r *Reachability) {
			r.ExpectPeer(Peer{NS: "x"}, Peer{NS: "x", Pod: "a"}, false)
			r.ExpectPeer(Peer{NS: "z"}, Peer{NS: "x", Pod: "a"}, false)
		}),
		tcp(81, func(r *Reachability) { r.ExpectAllIngress("x/a", false) })),

	oneStep("should allow egress access on one named port",
		fixed(NetPol("x", "allow-egress", nil, Egress(WithEgressPorts(networkingv1.NetworkPolicyEgressRule{}, NamedPortRule("serve-80-tcp", ""))))),
		tcp(80, allConnect),
		tcp(81, func(r *Reachability) { r.ExpectPeer(Peer{NS: "x"}, Peer{}, false) })),

	oneStep("should not allow all ports if it cannot limit to the requested port",
		fixed(NetPol("x", "allow-ingress-on-nonexistent-port", Labels("pod", "a"), Ingress(WithPorts(networkingv1.NetworkPolicyIngressRule{}, NamedPortRule("no-such-port", "TCP"))))),
		tcp(80, func(r *Reachability) { r.ExpectAllIngress("x/a", false) })),

	{Name: "should enforce updated policy", Steps: []Step{
		{Policies: fixed(NetPol("x", "allow-all-mutate-to-deny-all", nil, Ingress(networkingv1.NetworkPolicyIngressRule{}))),
			Probes: []Probe{tcp(81, allConnect)}},
		{Policies: fixed(NetPol("x", "allow-all-mutate-to-deny-all", nil, Ingress())),
			Probes: []Probe{tcp(81, func(r *Reachability) { r.ExpectPeer(Peer{}, Peer{NS: "x"}, false) })}},
	}},

	oneStep("should deny egress from pods based on PodSelector",
		fixed(NetPol("x", "deny-egress-pod-a", Labels("pod", "a"), Egress())),
		tcp(80, func(r *Reachability) { r.ExpectAllEgress("x/a", false) })),

	oneStep("should deny egress from all pods in a namespace",
		fixed(NetPol("x", "deny-egress-ns-x", nil, Egress())),
		tcp(80, func(r *Reachability) { r.ExpectPeer(Peer{NS: "x"}, Peer{}, false) })),

	oneStep("should not allow access by TCP when a policy specifies only UDP",
		fixed(NetPol("x", "allow-only-udp-ingress-on-port-81", Labels("pod", "a"), Ingress(WithPorts(networkingv1.NetworkPolicyIngressRule{}, PortRule(81, "UDP"))))),
		tcp(81, func(r *Reachability) { r.ExpectAllIngress("x/a", false) }),
		udp(81, allConnect)),

	oneStep("should enforce ingress policy allowing any port traffic to a server on a specific protocol",
		fixed(NetPol("x", "allow-ingress-by-proto", Labels("pod", "a"), Ingress(WithPorts(networkingv1.NetworkPolicyIngressRule{}, ProtoOnly("TCP"))))),
		tcp(80, allConnect),
		udp(80, func(r *Reachability) { r.ExpectAllIngress("x/a", false) })),

	oneStep("should allow egress access to server in CIDR block",
		func(w Addrs, family int) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{NetPol("x", "allow-client-a-via-cidr-egress-rule", Labels("pod", "a"),
				Egress(To(IPBlock(HostCIDR(w, "y/b", family)))))}
		},
		tcp(80, func(r *Reachability) {
			r.ExpectAllEgress("x/a", false)
			r.Expect("x/a", "y/b", true)
		})),

	oneStep("should enforce except clause while egress access to server in CIDR block",
		func(w Addrs, family int) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{NetPol("x", "allow-client-a-via-cidr-egress-rule", Labels("pod", "a"),
				Egress(To(IPBlock(LargeCIDR(w, "x/b", family), HostCIDR(w, "x/b", family)))))}
		},
		tcp(80, func(r *Reachability) { r.Expect("x/a", "x/b", false) })),

	{Name: "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed", Steps: []Step{
		{Policies: func(w Addrs, family int) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{NetPol("x", "allow-client-a-via-cidr-egress-rule", Labels("pod", "a"),
				Egress(To(IPBlock(LargeCIDR(w, "x/b", family), HostCIDR(w, "x/b", family)))))}
		}, Probes: []Probe{tcp(80, func(r *Reachability) { r.Expect("x/a", "x/b", false) })}},
		{Policies: func(w Addrs, family int) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{NetPol("x", "allow-client-a-via-cidr-egress-rule", Labels("pod", "a"),
				Egress(To(IPBlock(HostCIDR(w, "x/b", family)))))}
		}, Probes: []Probe{tcp(80, func(r *Reachability) {
			r.ExpectAllEgress("x/a", false)
			r.Expect("x/a", "x/b", true)
		})}},
	}},
}

// expectOnlyYToXA: x/a accepts only namespace y.
func expectOnlyYToXA(r *Reachability) {
	r.ExpectPeer(Peer{NS: "x"}, Peer{NS: "x", Pod: "a"}, false)
	r.ExpectPeer(Peer{NS: "y"}, Peer{NS: "x", Pod: "a"}, true)
	r.ExpectPeer(Peer{NS: "z"}, Peer{NS: "x", Pod: "a"}, false)
}
