package netpol

import (
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// moreScenarios are the rest of k8s.io/kubernetes v1.37
// test/e2e/network/netpol/network_policy.go: the tests of "NetworkPolicy
// between server and client" that scenarios leaves out, then the contexts
// "using UDP" and "using SCTP" (their names prefixed with "UDP/" and
// "SCTP/", as their titles repeat those of the first context).
//
// SCTP: this kernel has no SCTP sockets, so no probe here is SCTP. The
// tests of policies allowing SCTP are ported with TCP probes (upstream's
// own for the two of the first context; for the SCTP context, TCP on the
// same port): a policy allowing SCTP must isolate its pods for TCP. The
// datapath's SCTP verdicts (an SCTP port rule allows SCTP to that port and
// nothing else) are checked with crafted packets in bpf's
// TestCraftedPackets.
var moreScenarios = []Scenario{
	{Name: "should allow ingress access from updated namespace", Steps: []Step{
		{Policies: fixed(allowXAFromUpdatedNs), Probes: []Probe{
			tcp(80, func(r *Reachability) { r.ExpectAllIngress("x/a", false) })}},
		// AddNamespaceLabel(y, ns2=updated)
		{Policies: fixed(allowXAFromUpdatedNs), NsLabels: map[string]map[string]string{"y": Plus(NamespaceLabels("y"), "ns2", "updated")},
			Probes: []Probe{tcp(80, func(r *Reachability) {
				r.ExpectAllIngress("x/a", false)
				r.ExpectPeer(Peer{NS: "y"}, Peer{}, true)
			})}},
	}},

	{Name: "should allow ingress access from updated pod", Steps: []Step{
		{Policies: fixed(allowXAFromUpdatedPod), Probes: []Probe{
			tcp(80, func(r *Reachability) { r.ExpectAllIngress("x/a", false) })}},
		// AddPodLabels(x/b, pod=b, pod2=updated)
		{Policies: fixed(allowXAFromUpdatedPod), PodLabels: map[Pod]map[string]string{"x/b": Labels("pod", "b", "pod2", "updated")},
			Probes: []Probe{tcp(80, func(r *Reachability) {
				r.ExpectAllIngress("x/a", false)
				r.Expect("x/b", "x/a", true)
			})}},
	}},

	oneStep("should deny ingress from pods on other namespaces",
		fixed(NetPol("x", "deny-empty-policy", nil, Ingress(From(PodSel(Sel()))))),
		tcp(80, func(r *Reachability) {
			r.ExpectPeer(Peer{NS: "y"}, Peer{NS: "x"}, false)
			r.ExpectPeer(Peer{NS: "z"}, Peer{NS: "x"}, false)
		})),

	{Name: "should deny ingress access to updated pod", Steps: []Step{
		{Policies: fixed(denyIngressToIsolated), Probes: []Probe{tcp(80, allConnect)}},
		// AddPodLabels(x/a, target=isolated)
		{Policies: fixed(denyIngressToIsolated), PodLabels: map[Pod]map[string]string{"x/a": Labels("pod", "a", "target", "isolated")},
			Probes: []Probe{tcp(80, func(r *Reachability) { r.ExpectAllIngress("x/a", false) })}},
	}},

	oneStep("should work with Ingress, Egress specified together",
		fixed(NetPol("x", "allow-client-a-via-pod-selector", Labels("pod", "a"),
			Ingress(From(PodSel(Sel("pod", "b")))),
			Egress(WithEgressPorts(networkingv1.NetworkPolicyEgressRule{}, PortRule(80, ""))),
			PolicyTypes(networkingv1.PolicyTypeEgress, networkingv1.PolicyTypeIngress))),
		tcp(80, func(r *Reachability) {
			r.ExpectAllIngress("x/a", false)
			r.Expect("x/b", "x/a", true)
		}),
		tcp(81, func(r *Reachability) {
			r.ExpectAllIngress("x/a", false)
			r.ExpectAllEgress("x/a", false)
			r.Expect("x/b", "x/a", true)
		})),

	oneStep("should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)",
		fixed(NetPol("x", "allow-to-ns-y-pod-a", Labels("pod", "a"), Egress(To(PodNsSel(Sel("pod", "a"), Sel(NsKey, "y"))))),
			NetPol("y", "allow-from-xa-on-ya-match-selector", Labels("pod", "a"), Ingress(From(PodNsSel(Sel("pod", "a"), Sel(NsKey, "x"))))),
			NetPol("y", "allow-from-xa-on-yb-match-selector", Labels("pod", "b"), Ingress(From(PodNsSel(Sel("pod", "a"), Sel(NsKey, "x")))))),
		tcp(80, func(r *Reachability) {
			r.ExpectPeer(Peer{NS: "x", Pod: "a"}, Peer{}, false)
			r.ExpectPeer(Peer{}, Peer{NS: "y", Pod: "a"}, false)
			r.ExpectPeer(Peer{NS: "x", Pod: "a"}, Peer{NS: "y", Pod: "a"}, true)
			r.ExpectPeer(Peer{}, Peer{NS: "y", Pod: "b"}, false)
		})),

	oneStep("should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector",
		fixed(NetPol("x", "allow-to-ns-y-pod-a", Labels("pod", "a"), Egress(To(PodNsSel(Sel("pod", "a"), Sel(NsKey, "y")))))),
		tcp(80, func(r *Reachability) {
			r.ExpectAllEgress("x/a", false)
			r.Expect("x/a", "y/a", true)
		})),

	{Name: "should enforce multiple ingress policies with ingress allow-all policy taking precedence", Steps: []Step{
		{Policies: fixed(allowIngressPort80), Probes: []Probe{
			tcp(81, func(r *Reachability) { r.ExpectPeer(Peer{}, Peer{NS: "x"}, false) })}},
		{Policies: fixed(allowIngressPort80, NetPol("x", "allow-ingress", nil, Ingress(networkingv1.NetworkPolicyIngressRule{}))),
			Probes: []Probe{tcp(81, allConnect)}},
	}},

	{Name: "should enforce multiple egress policies with egress allow-all policy taking precedence", Steps: []Step{
		{Policies: fixed(allowEgressPort80), Probes: []Probe{
			tcp(81, func(r *Reachability) { r.ExpectPeer(Peer{NS: "x"}, Peer{}, false) })}},
		{Policies: fixed(allowEgressPort80, NetPol("x", "allow-egress", nil, Egress(networkingv1.NetworkPolicyEgressRule{}))),
			Probes: []Probe{tcp(81, allConnect)}},
	}},

	{Name: "should stop enforcing policies after they are deleted", Steps: []Step{
		{Policies: fixed(NetPol("x", "deny-all", nil, Ingress(), Egress())), Probes: []Probe{
			tcp(80, func(r *Reachability) {
				r.ExpectPeer(Peer{NS: "x"}, Peer{}, false)
				r.ExpectPeer(Peer{}, Peer{NS: "x"}, false)
			})}},
		// cleanNetworkPolicies
		{Policies: fixed(), Probes: []Probe{tcp(80, allConnect)}},
	}},

	{Name: "should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector", Steps: []Step{
		{Policies: fixed(allowEgressForTarget), Probes: []Probe{tcp(80, allConnect)}},
		{Policies: fixed(allowEgressForTarget, NetPol("x", "deny-ingress-via-label-selector", Labels("pod", "a"), Ingress())),
			Probes: []Probe{tcp(80, func(r *Reachability) { r.ExpectAllIngress("x/a", false) })}},
	}},

	oneStep("should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
		fixed(NetPol("x", "deny-ingress", nil, Ingress()),
			NetPol("x", "allow-only-sctp-ingress-on-port-81", Labels("pod", "a"), Ingress(WithPorts(networkingv1.NetworkPolicyIngressRule{}, PortRule(81, "SCTP"))))),
		tcp(81, func(r *Reachability) { r.ExpectPeer(Peer{}, Peer{NS: "x"}, false) })),

	oneStep("should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
		fixed(NetPol("x", "allow-only-sctp-ingress-on-port-80", Labels("pod", "a"), Ingress(WithPorts(networkingv1.NetworkPolicyIngressRule{}, PortRule(80, "SCTP"))))),
		tcp(81, func(r *Reachability) { r.ExpectAllIngress("x/a", false) })),

	oneStep("should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label",
		fixed(NetPol("x", "allow-client-a-via-ns-selector-for-immutable-ns-label", Labels("pod", "a"), Ingress(From(NsSel(Sel(NsKey, "y")))))),
		tcp(80, func(r *Reachability) {
			r.ExpectPeer(Peer{NS: "x"}, Peer{NS: "x", Pod: "a"}, false)
			r.ExpectPeer(Peer{NS: "z"}, Peer{NS: "x", Pod: "a"}, false)
		})),

	oneStep("should enforce policy based on NamespaceSelector with MatchExpressions using default ns label",
		fixed(NetPol("x", "allow-ns-y-match-selector-for-immutable-ns-label", Labels("pod", "a"),
			Egress(To(NsSel(SelExpr(NsKey, metav1.LabelSelectorOpNotIn, "y")))))),
		tcp(80, func(r *Reachability) { r.ExpectPeer(Peer{NS: "x", Pod: "a"}, Peer{NS: "y"}, false) })),

	// NetworkPolicy between server and client using UDP.

	oneStep("UDP/should support a 'default-deny-ingress' policy",
		fixed(NetPol("x", "deny-all", nil, Ingress())),
		udp(80, func(r *Reachability) { r.ExpectPeer(Peer{}, Peer{NS: "x"}, false) })),

	oneStep("UDP/should enforce policy based on Ports",
		fixed(NetPol("x", "allow-ingress-on-port-81-ns-x", Labels("pod", "a"), Ingress(WithPorts(From(NsSel(Sel(NsKey, "y"))), PortRule(81, "UDP"))))),
		udp(81, func(r *Reachability) {
			r.ExpectPeer(Peer{NS: "x"}, Peer{NS: "x", Pod: "a"}, false)
			r.ExpectPeer(Peer{NS: "z"}, Peer{NS: "x", Pod: "a"}, false)
		})),

	oneStep("UDP/should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
		fixed(NetPol("x", "allow-ns-y-pod-a-via-namespace-pod-selector", Labels("pod", "a"), Ingress(From(PodNsSel(Sel("pod", "a"), Sel(NsKey, "y")))))),
		udp(80, func(r *Reachability) {
			r.ExpectAllIngress("x/a", false)
			r.Expect("y/a", "x/a", true)
		})),

	// NetworkPolicy between server and client using SCTP, probed with TCP
	// (see above). The policies of the first and the last name no
	// protocol, so upstream's SCTP tables are the TCP ones; the second
	// allows only SCTP on 81 (upstream: from y to x/a), so for TCP it
	// isolates x/a from everyone.

	oneStep("SCTP/should support a 'default-deny-ingress' policy",
		fixed(NetPol("x", "deny-all", nil, Ingress())),
		tcp(80, func(r *Reachability) { r.ExpectPeer(Peer{}, Peer{NS: "x"}, false) })),

	oneStep("SCTP/should enforce policy based on Ports",
		fixed(NetPol("x", "allow-ingress-on-port-81-ns-x", Labels("pod", "a"), Ingress(WithPorts(From(NsSel(Sel(NsKey, "y"))), PortRule(81, "SCTP"))))),
		tcp(81, func(r *Reachability) { r.ExpectAllIngress("x/a", false) })),

	oneStep("SCTP/should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
		fixed(NetPol("x", "allow-ns-y-pod-a-via-namespace-pod-selector", Labels("pod", "a"), Ingress(From(PodNsSel(Sel("pod", "a"), Sel(NsKey, "y")))))),
		tcp(80, func(r *Reachability) {
			r.ExpectAllIngress("x/a", false)
			r.Expect("y/a", "x/a", true)
		})),
}

// Policies that several steps of a Scenario hold.
var (
	allowXAFromUpdatedNs  = NetPol("x", "allow-client-a-via-ns-selector", Labels("pod", "a"), Ingress(From(NsSel(Sel("ns2", "updated")))))
	allowXAFromUpdatedPod = NetPol("x", "allow-client-a-via-pod-selector", Labels("pod", "a"), Ingress(From(PodSel(Sel("pod", "b", "pod2", "updated")))))
	denyIngressToIsolated = NetPol("x", "deny-ingress-via-label-selector", Labels("target", "isolated"), Ingress())
	allowIngressPort80    = NetPol("x", "allow-ingress-port-80", nil, Ingress(WithPorts(networkingv1.NetworkPolicyIngressRule{}, PortRule(80, ""))))
	allowEgressPort80     = NetPol("x", "allow-egress-port-80", nil, Egress(WithEgressPorts(networkingv1.NetworkPolicyEgressRule{}, PortRule(80, ""))))
	allowEgressForTarget  = NetPol("x", "allow-egress-for-target", Labels("pod", "a"), Egress(networkingv1.NetworkPolicyEgressRule{}))
)
