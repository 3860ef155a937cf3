//go:build linux

package scenarios

import (
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/netpol"
)

// TestNetworkPolicyMatrixAcrossClusters probes the upstream NetworkPolicy
// suite's model on the bed (matrixWorld: the model spread over two
// connected dual-stack clusters) with the agents' default selection of
// peers: a podSelector or namespaceSelector peer without a requirement on
// io.cilium.k8s.policy.cluster selects pods of the policy's own cluster
// only (--policy-default-local-cluster, default true, as Cilium from
// 1.19; docs/policy.md, "Selecting peers in other clusters"). Rules
// without peers (allow-all, ports only) and ipBlock peers (which select
// pods by address, whatever their labels) are not limited to a cluster.
// Each case's NetworkPolicies go through the kube-apiserver of both
// clusters; then every pair of pods is probed with real connections for
// each of the case's ports and protocols, over IPv4 and over IPv6, and
// compared with the expected truth table: upstream's where the cluster
// makes no difference, and each case says where its table differs.
// Upstream's tables unchanged, every scenario, are
// TestNetworkPolicyUpstreamAcrossClusters's.
func TestNetworkPolicyMatrixAcrossClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts whole clusters (kube-apiservers, controller managers, clustermesh-apiservers, agents, pods)")
	}
	log := &testLog{t: t}
	b := startBedWith(t, log, bed.Options{DualStack: true})
	w := newMatrixWorld(t, b)
	for _, mc := range matrixCases {
		for _, families := range familyRuns(w, mc.policies) {
			ok := t.Run(familiesName(families)+"/"+mc.name, func(t *testing.T) {
				log.t = t
				start := time.Now()
				// Every case starts from no policy, as upstream's
				// cleanNetworkPolicies: all pairs connect.
				w.clearPolicies(t)
				w.check(t, families, mc.probes, true)
				w.setPolicies(t, mc.policies(w, families[0]))
				rounds := w.check(t, families, mc.probes, false)
				for _, family := range families {
					for _, d := range mc.drops {
						w.checkDrop(t, family, d.from, d.to, d.direction)
					}
				}
				b.Logf("    %s %s: %d pairs x %d probes as expected (%d rounds, %.1fs)", familiesName(families), mc.name,
					len(w.pods)*(len(w.pods)-1), len(mc.probes), rounds, time.Since(start).Seconds())
			})
			log.t = t
			if !ok {
				return
			}
		}
	}
}

// msel matches model pods by namespace, pod and cluster; an empty field
// matches any.
type msel struct{ ns, pod, cluster string }

func (s msel) matches(p netpol.Pod) bool {
	return (s.ns == "" || s.ns == p.Namespace()) && (s.pod == "" || s.pod == p.Name()) && (s.cluster == "" || s.cluster == podCluster(p))
}

// expect sets the expectation of every pair from a pod matching from to a
// pod matching to.
func expect(r *netpol.Reachability, from, to msel, ok bool) {
	r.ExpectWhere(from.matches, to.matches, ok)
}

// matrixCase is one upstream test (or a cross-cluster variant of one):
// its policies, created in both clusters, and its probes.
type matrixCase struct {
	name     string
	policies func(w netpol.Addrs, family int) []*networkingv1.NetworkPolicy
	probes   []netpol.Probe
	// drops are refused pairs (TCP 80) whose drop the agent of the
	// dropping side must have recorded as policy-denied, with the pods'
	// clusters: the refusal is the policy's, not a path that does not
	// work (the matrix with no policy connects every pair first).
	drops []matrixDrop
}

// matrixDrop is a refused pair and the direction of the policy that
// drops it ("ingress": the server's node records it; "egress": the
// client's).
type matrixDrop struct {
	from, to  netpol.Pod
	direction string
}

func fixedPolicies(nps ...*networkingv1.NetworkPolicy) func(netpol.Addrs, int) []*networkingv1.NetworkPolicy {
	return func(netpol.Addrs, int) []*networkingv1.NetworkPolicy { return nps }
}

func tcpProbe(port uint16, expect func(*netpol.Reachability)) netpol.Probe {
	return netpol.Probe{Port: port, Proto: "TCP", Expect: expect}
}

func udpProbe(port uint16, expect func(*netpol.Reachability)) netpol.Probe {
	return netpol.Probe{Port: port, Proto: "UDP", Expect: expect}
}

// Selectors of the model's pods.
var (
	anyPod = msel{}
	xa     = msel{ns: "x", pod: "a"}
	xc     = msel{ns: "x", pod: "c"}
)

// clusterKey is the label of a pod's cluster in policies.
const clusterKey = "io.cilium.k8s.policy.cluster"

// matrixCases are tests of k8s.io/kubernetes v1.37
// test/e2e/network/netpol/network_policy.go (each names its own) whose
// cross-cluster outcome depends on the default, and cross-cluster
// variants of some (named "across clusters").
var matrixCases = []matrixCase{
	{name: "default-deny-ingress",
		// should support a 'default-deny-ingress' policy (and its UDP
		// context): in both clusters, so x/c is isolated too.
		policies: fixedPolicies(netpol.NetPol("x", "deny-ingress", nil, netpol.Ingress())),
		probes: []netpol.Probe{
			tcpProbe(80, func(r *netpol.Reachability) { expect(r, anyPod, msel{ns: "x"}, false) }),
			udpProbe(80, func(r *netpol.Reachability) { expect(r, anyPod, msel{ns: "x"}, false) }),
		}},

	{name: "allow from a namespace by NamespaceSelector",
		// should enforce policy to allow traffic only from a different
		// namespace, based on NamespaceSelector. Upstream lets all of y
		// in; here y/c is in cluster2, which the selector (no cluster
		// requirement) does not reach.
		policies: fixedPolicies(netpol.NetPol("x", "allow-client-a-via-ns-selector", netpol.Labels("pod", "a"),
			netpol.Ingress(netpol.From(netpol.NsSel(netpol.Sel(netpol.NsKey, "y")))))),
		probes: []netpol.Probe{tcpProbe(80, func(r *netpol.Reachability) {
			expect(r, anyPod, xa, false)
			expect(r, msel{ns: "y", cluster: "cluster1"}, xa, true)
		})},
		drops: []matrixDrop{{"y/c", "x/a", "ingress"}}},

	{name: "allow from a namespace of every cluster by NamespaceSelector and cluster key (across clusters)",
		// The same policy for all of x, its podSelector requiring
		// io.cilium.k8s.policy.cluster to exist: y's pods of both
		// clusters get in, to x's pods of both clusters.
		policies: fixedPolicies(netpol.NetPol("x", "allow-ns-y-every-cluster", nil,
			netpol.Ingress(netpol.From(netpol.PodNsSel(netpol.SelExpr(clusterKey, metav1.LabelSelectorOpExists), netpol.Sel(netpol.NsKey, "y")))))),
		probes: []netpol.Probe{tcpProbe(80, func(r *netpol.Reachability) {
			expect(r, anyPod, msel{ns: "x"}, false)
			expect(r, msel{ns: "y"}, msel{ns: "x"}, true)
		})}},

	{name: "PodSelector and NamespaceSelector",
		// should enforce policy based on PodSelector and
		// NamespaceSelector: y/b and z/b are in x/a's cluster, so the
		// table is upstream's.
		policies: fixedPolicies(netpol.NetPol("x", "allow-ns-y-podselector-and-nsselector", netpol.Labels("pod", "a"),
			netpol.Ingress(netpol.From(netpol.PodNsSel(netpol.Sel("pod", "b"), netpol.SelExpr(netpol.NsKey, metav1.LabelSelectorOpNotIn, "x")))))),
		probes: []netpol.Probe{tcpProbe(80, func(r *netpol.Reachability) {
			expect(r, anyPod, xa, false)
			expect(r, msel{ns: "y", pod: "b"}, xa, true)
			expect(r, msel{ns: "z", pod: "b"}, xa, true)
		})}},

	{name: "Multiple PodSelectors and NamespaceSelectors",
		// should enforce policy based on Multiple PodSelectors and
		// NamespaceSelectors: upstream lets y/b, y/c, z/b, z/c in; y/c
		// and z/c are in cluster2, which the selector does not reach.
		policies: fixedPolicies(netpol.NetPol("x", "allow-ns-y-z-pod-b-c", netpol.Labels("pod", "a"),
			netpol.Ingress(netpol.From(netpol.PodNsSel(netpol.SelExpr("pod", metav1.LabelSelectorOpIn, "b", "c"), netpol.SelExpr(netpol.NsKey, metav1.LabelSelectorOpNotIn, "x")))))),
		probes: []netpol.Probe{tcpProbe(80, func(r *netpol.Reachability) {
			expect(r, anyPod, xa, false)
			expect(r, msel{ns: "y", pod: "b"}, xa, true)
			expect(r, msel{ns: "z", pod: "b"}, xa, true)
		})}},

	{name: "Ports",
		// should enforce policy based on Ports (and the first step of
		// "multiple, stacked policies": port 80 closed to all): x/a
		// accepts namespace y on TCP 81 only; y/c is in cluster2.
		policies: fixedPolicies(netpol.NetPol("x", "allow-client-a-via-ns-selector", netpol.Labels("pod", "a"),
			netpol.Ingress(netpol.WithPorts(netpol.From(netpol.NsSel(netpol.Sel(netpol.NsKey, "y"))), netpol.PortRule(81, "TCP"))))),
		probes: []netpol.Probe{
			tcpProbe(81, func(r *netpol.Reachability) {
				expect(r, anyPod, xa, false)
				expect(r, msel{ns: "y", cluster: "cluster1"}, xa, true)
			}),
			tcpProbe(80, func(r *netpol.Reachability) { expect(r, anyPod, xa, false) }),
		}},

	{name: "allow-all on one port (no peer: every cluster)",
		// should allow ingress access on one named port, with the port
		// numbered: a rule without peers lets every cluster in.
		policies: fixedPolicies(netpol.NetPol("x", "allow-all-81", nil,
			netpol.Ingress(netpol.WithPorts(networkingv1.NetworkPolicyIngressRule{}, netpol.PortRule(81, "TCP"))))),
		probes: []netpol.Probe{
			tcpProbe(81, func(*netpol.Reachability) {}),
			tcpProbe(80, func(r *netpol.Reachability) { expect(r, anyPod, msel{ns: "x"}, false) }),
		}},

	{name: "deny egress from all pods in a namespace",
		// should deny egress from all pods in a namespace: x's pods of
		// both clusters reach no one.
		policies: fixedPolicies(netpol.NetPol("x", "deny-egress-ns-x", nil, netpol.Egress())),
		probes:   []netpol.Probe{tcpProbe(80, func(r *netpol.Reachability) { expect(r, msel{ns: "x"}, anyPod, false) })},
		drops:    []matrixDrop{{"x/c", "y/a", "egress"}}},

	{name: "egress and ingress by a pod's address in the other cluster (across clusters)",
		// should allow egress access to server in CIDR block, with the
		// server in the other cluster, both ways (x/a
		// of cluster1 to y/c of cluster2, x/c of cluster2 to y/a of
		// cluster1), and for ingress: z/c of cluster2 accepts only z/a's
		// address. ipBlock selects pods by address, whatever their
		// cluster.
		policies: func(w netpol.Addrs, family int) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{
				netpol.NetPol("x", "x-a-egress-to-y-c-by-cidr", netpol.Labels("pod", "a"), netpol.Egress(netpol.To(netpol.IPBlock(netpol.HostCIDR(w, "y/c", family))))),
				netpol.NetPol("x", "x-c-egress-to-y-a-by-cidr", netpol.Labels("pod", "c"), netpol.Egress(netpol.To(netpol.IPBlock(netpol.HostCIDR(w, "y/a", family))))),
				netpol.NetPol("z", "z-c-ingress-from-z-a-by-cidr", netpol.Labels("pod", "c"), netpol.Ingress(netpol.From(netpol.IPBlock(netpol.HostCIDR(w, "z/a", family))))),
			}
		},
		probes: []netpol.Probe{tcpProbe(80, func(r *netpol.Reachability) {
			expect(r, xa, anyPod, false)
			expect(r, xa, msel{ns: "y", pod: "c"}, true)
			expect(r, xc, anyPod, false)
			expect(r, xc, msel{ns: "y", pod: "a"}, true)
			expect(r, anyPod, msel{ns: "z", pod: "c"}, false)
			expect(r, msel{ns: "z", pod: "a"}, msel{ns: "z", pod: "c"}, true)
		})}},
}
