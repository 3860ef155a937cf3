package netpol

import (
	"maps"

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
var moreScenarios = []scenario{
	{name: "should allow ingress access from updated namespace", steps: []step{
		{policies: fixed(allowXAFromUpdatedNs), probes: []probeSpec{
			tcp(80, func(r *reachability) { r.expectAllIngress("x/a", false) })}},
		// AddNamespaceLabel(y, ns2=updated)
		{policies: fixed(allowXAFromUpdatedNs), nsLabels: map[string]map[string]string{"y": plus(nsLabels("y"), "ns2", "updated")},
			probes: []probeSpec{tcp(80, func(r *reachability) {
				r.expectAllIngress("x/a", false)
				r.expectPeer(peer{ns: "y"}, peer{}, true)
			})}},
	}},

	{name: "should allow ingress access from updated pod", steps: []step{
		{policies: fixed(allowXAFromUpdatedPod), probes: []probeSpec{
			tcp(80, func(r *reachability) { r.expectAllIngress("x/a", false) })}},
		// AddPodLabels(x/b, pod=b, pod2=updated)
		{policies: fixed(allowXAFromUpdatedPod), podLabels: map[podName]map[string]string{"x/b": labels("pod", "b", "pod2", "updated")},
			probes: []probeSpec{tcp(80, func(r *reachability) {
				r.expectAllIngress("x/a", false)
				r.expect("x/b", "x/a", true)
			})}},
	}},

	oneStep("should deny ingress from pods on other namespaces",
		fixed(netpol("x", "deny-empty-policy", nil, ingress(from(pods(sel()))))),
		tcp(80, func(r *reachability) {
			r.expectPeer(peer{ns: "y"}, peer{ns: "x"}, false)
			r.expectPeer(peer{ns: "z"}, peer{ns: "x"}, false)
		})),

	{name: "should deny ingress access to updated pod", steps: []step{
		{policies: fixed(denyIngressToIsolated), probes: []probeSpec{tcp(80, allConnect)}},
		// AddPodLabels(x/a, target=isolated)
		{policies: fixed(denyIngressToIsolated), podLabels: map[podName]map[string]string{"x/a": labels("pod", "a", "target", "isolated")},
			probes: []probeSpec{tcp(80, func(r *reachability) { r.expectAllIngress("x/a", false) })}},
	}},

	oneStep("should work with Ingress, Egress specified together",
		fixed(netpol("x", "allow-client-a-via-pod-selector", labels("pod", "a"),
			ingress(from(pods(sel("pod", "b")))),
			egress(withEgressPorts(networkingv1.NetworkPolicyEgressRule{}, port(80, ""))),
			policyTypes(networkingv1.PolicyTypeEgress, networkingv1.PolicyTypeIngress))),
		tcp(80, func(r *reachability) {
			r.expectAllIngress("x/a", false)
			r.expect("x/b", "x/a", true)
		}),
		tcp(81, func(r *reachability) {
			r.expectAllIngress("x/a", false)
			r.expectAllEgress("x/a", false)
			r.expect("x/b", "x/a", true)
		})),

	oneStep("should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)",
		fixed(netpol("x", "allow-to-ns-y-pod-a", labels("pod", "a"), egress(to(podsInNs(sel("pod", "a"), sel(nsKey, "y"))))),
			netpol("y", "allow-from-xa-on-ya-match-selector", labels("pod", "a"), ingress(from(podsInNs(sel("pod", "a"), sel(nsKey, "x"))))),
			netpol("y", "allow-from-xa-on-yb-match-selector", labels("pod", "b"), ingress(from(podsInNs(sel("pod", "a"), sel(nsKey, "x")))))),
		tcp(80, func(r *reachability) {
			r.expectPeer(peer{ns: "x", pod: "a"}, peer{}, false)
			r.expectPeer(peer{}, peer{ns: "y", pod: "a"}, false)
			r.expectPeer(peer{ns: "x", pod: "a"}, peer{ns: "y", pod: "a"}, true)
			r.expectPeer(peer{}, peer{ns: "y", pod: "b"}, false)
		})),

	oneStep("should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector",
		fixed(netpol("x", "allow-to-ns-y-pod-a", labels("pod", "a"), egress(to(podsInNs(sel("pod", "a"), sel(nsKey, "y")))))),
		tcp(80, func(r *reachability) {
			r.expectAllEgress("x/a", false)
			r.expect("x/a", "y/a", true)
		})),

	{name: "should enforce multiple ingress policies with ingress allow-all policy taking precedence", steps: []step{
		{policies: fixed(allowIngressPort80), probes: []probeSpec{
			tcp(81, func(r *reachability) { r.expectPeer(peer{}, peer{ns: "x"}, false) })}},
		{policies: fixed(allowIngressPort80, netpol("x", "allow-ingress", nil, ingress(networkingv1.NetworkPolicyIngressRule{}))),
			probes: []probeSpec{tcp(81, allConnect)}},
	}},

	{name: "should enforce multiple egress policies with egress allow-all policy taking precedence", steps: []step{
		{policies: fixed(allowEgressPort80), probes: []probeSpec{
			tcp(81, func(r *reachability) { r.expectPeer(peer{ns: "x"}, peer{}, false) })}},
		{policies: fixed(allowEgressPort80, netpol("x", "allow-egress", nil, egress(networkingv1.NetworkPolicyEgressRule{}))),
			probes: []probeSpec{tcp(81, allConnect)}},
	}},

	{name: "should stop enforcing policies after they are deleted", steps: []step{
		{policies: fixed(netpol("x", "deny-all", nil, ingress(), egress())), probes: []probeSpec{
			tcp(80, func(r *reachability) {
				r.expectPeer(peer{ns: "x"}, peer{}, false)
				r.expectPeer(peer{}, peer{ns: "x"}, false)
			})}},
		// cleanNetworkPolicies
		{policies: fixed(), probes: []probeSpec{tcp(80, allConnect)}},
	}},

	{name: "should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector", steps: []step{
		{policies: fixed(allowEgressForTarget), probes: []probeSpec{tcp(80, allConnect)}},
		{policies: fixed(allowEgressForTarget, netpol("x", "deny-ingress-via-label-selector", labels("pod", "a"), ingress())),
			probes: []probeSpec{tcp(80, func(r *reachability) { r.expectAllIngress("x/a", false) })}},
	}},

	oneStep("should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
		fixed(netpol("x", "deny-ingress", nil, ingress()),
			netpol("x", "allow-only-sctp-ingress-on-port-81", labels("pod", "a"), ingress(withPorts(networkingv1.NetworkPolicyIngressRule{}, port(81, "SCTP"))))),
		tcp(81, func(r *reachability) { r.expectPeer(peer{}, peer{ns: "x"}, false) })),

	oneStep("should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
		fixed(netpol("x", "allow-only-sctp-ingress-on-port-80", labels("pod", "a"), ingress(withPorts(networkingv1.NetworkPolicyIngressRule{}, port(80, "SCTP"))))),
		tcp(81, func(r *reachability) { r.expectAllIngress("x/a", false) })),

	oneStep("should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label",
		fixed(netpol("x", "allow-client-a-via-ns-selector-for-immutable-ns-label", labels("pod", "a"), ingress(from(nss(sel(nsKey, "y")))))),
		tcp(80, func(r *reachability) {
			r.expectPeer(peer{ns: "x"}, peer{ns: "x", pod: "a"}, false)
			r.expectPeer(peer{ns: "z"}, peer{ns: "x", pod: "a"}, false)
		})),

	oneStep("should enforce policy based on NamespaceSelector with MatchExpressions using default ns label",
		fixed(netpol("x", "allow-ns-y-match-selector-for-immutable-ns-label", labels("pod", "a"),
			egress(to(nss(selExpr(nsKey, metav1.LabelSelectorOpNotIn, "y")))))),
		tcp(80, func(r *reachability) { r.expectPeer(peer{ns: "x", pod: "a"}, peer{ns: "y"}, false) })),

	// NetworkPolicy between server and client using UDP.

	oneStep("UDP/should support a 'default-deny-ingress' policy",
		fixed(netpol("x", "deny-all", nil, ingress())),
		udp(80, func(r *reachability) { r.expectPeer(peer{}, peer{ns: "x"}, false) })),

	oneStep("UDP/should enforce policy based on Ports",
		fixed(netpol("x", "allow-ingress-on-port-81-ns-x", labels("pod", "a"), ingress(withPorts(from(nss(sel(nsKey, "y"))), port(81, "UDP"))))),
		udp(81, func(r *reachability) {
			r.expectPeer(peer{ns: "x"}, peer{ns: "x", pod: "a"}, false)
			r.expectPeer(peer{ns: "z"}, peer{ns: "x", pod: "a"}, false)
		})),

	oneStep("UDP/should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
		fixed(netpol("x", "allow-ns-y-pod-a-via-namespace-pod-selector", labels("pod", "a"), ingress(from(podsInNs(sel("pod", "a"), sel(nsKey, "y")))))),
		udp(80, func(r *reachability) {
			r.expectAllIngress("x/a", false)
			r.expect("y/a", "x/a", true)
		})),

	// NetworkPolicy between server and client using SCTP, probed with TCP
	// (see above). The policies of the first and the last name no
	// protocol, so upstream's SCTP tables are the TCP ones; the second
	// allows only SCTP on 81 (upstream: from y to x/a), so for TCP it
	// isolates x/a from everyone.

	oneStep("SCTP/should support a 'default-deny-ingress' policy",
		fixed(netpol("x", "deny-all", nil, ingress())),
		tcp(80, func(r *reachability) { r.expectPeer(peer{}, peer{ns: "x"}, false) })),

	oneStep("SCTP/should enforce policy based on Ports",
		fixed(netpol("x", "allow-ingress-on-port-81-ns-x", labels("pod", "a"), ingress(withPorts(from(nss(sel(nsKey, "y"))), port(81, "SCTP"))))),
		tcp(81, func(r *reachability) { r.expectAllIngress("x/a", false) })),

	oneStep("SCTP/should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
		fixed(netpol("x", "allow-ns-y-pod-a-via-namespace-pod-selector", labels("pod", "a"), ingress(from(podsInNs(sel("pod", "a"), sel(nsKey, "y")))))),
		tcp(80, func(r *reachability) {
			r.expectAllIngress("x/a", false)
			r.expect("y/a", "x/a", true)
		})),
}

// Policies that several steps of a scenario hold.
var (
	allowXAFromUpdatedNs  = netpol("x", "allow-client-a-via-ns-selector", labels("pod", "a"), ingress(from(nss(sel("ns2", "updated")))))
	allowXAFromUpdatedPod = netpol("x", "allow-client-a-via-pod-selector", labels("pod", "a"), ingress(from(pods(sel("pod", "b", "pod2", "updated")))))
	denyIngressToIsolated = netpol("x", "deny-ingress-via-label-selector", labels("target", "isolated"), ingress())
	allowIngressPort80    = netpol("x", "allow-ingress-port-80", nil, ingress(withPorts(networkingv1.NetworkPolicyIngressRule{}, port(80, ""))))
	allowEgressPort80     = netpol("x", "allow-egress-port-80", nil, egress(withEgressPorts(networkingv1.NetworkPolicyEgressRule{}, port(80, ""))))
	allowEgressForTarget  = netpol("x", "allow-egress-for-target", labels("pod", "a"), egress(networkingv1.NetworkPolicyEgressRule{}))
)

// policyTypes replaces the policy's types (set as upstream writes them).
func policyTypes(ts ...networkingv1.PolicyType) npOption {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.PolicyTypes = ts }
}

// plus is a copy of m with the labels kv added.
func plus(m map[string]string, kv ...string) map[string]string {
	out := maps.Clone(m)
	maps.Copy(out, labels(kv...))
	return out
}
