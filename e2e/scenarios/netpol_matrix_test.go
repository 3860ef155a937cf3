//go:build linux

package scenarios

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/workload"
	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// TestNetworkPolicyMatrixAcrossClusters is the bed tier of the upstream
// NetworkPolicy suite's probe matrix (the fast tier, on one node, is
// e2e/netpol): the model's namespaces x, y, z exist in two connected
// dual-stack clusters, pods a and b of each namespace run in cluster1 (a
// on its first node, b on its second) and pod c in cluster2, so every
// namespace has pairs within a node, across nodes and across clusters.
// Each case's NetworkPolicies go through the kube-apiserver of both
// clusters (a policy applies to the pods of the cluster it is created in:
// creating it in both applies it to all of the model's pods, as upstream
// creates it once for all of them); then every pair of pods is probed
// with real connections from the pods (meshecho's control socket) for
// each of the case's ports and protocols, over IPv4 and over IPv6, and
// compared with the expected truth table.
//
// Expectations are upstream's with one deliberate difference
// (docs/policy.md, "Selecting peers in other clusters"): a podSelector or
// namespaceSelector peer without a requirement on
// io.cilium.k8s.policy.cluster selects pods of the policy's own cluster
// only (--policy-default-local-cluster, default true, as Cilium from
// 1.19). Rules without peers (allow-all, ports only) and ipBlock peers
// (which select pods by address, whatever their labels) are not limited
// to a cluster. Each case says where its table differs from upstream's.
func TestNetworkPolicyMatrixAcrossClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts whole clusters (kube-apiservers, controller managers, clustermesh-apiservers, agents, pods)")
	}
	log := &testLog{t: t}
	b := startBedWith(t, log, bed.Options{DualStack: true})
	w := newMatrixWorld(t, b)
	for _, family := range []int{4, 6} {
		for _, mc := range matrixCases {
			ok := t.Run(fmt.Sprintf("IPv%d/%s", family, mc.name), func(t *testing.T) {
				log.t = t
				start := time.Now()
				// Every case starts from no policy, as upstream's
				// cleanNetworkPolicies: all pairs connect.
				w.clearPolicies(t)
				w.check(t, family, mc.probes, true)
				for _, c := range w.clusters {
					for _, np := range mc.policies(w, family) {
						if _, err := c.Client.NetworkingV1().NetworkPolicies(np.Namespace).Create(t.Context(), np, metav1.CreateOptions{}); err != nil {
							t.Fatalf("cluster %s: create NetworkPolicy %s/%s: %v", c.Name, np.Namespace, np.Name, err)
						}
					}
				}
				rounds := w.check(t, family, mc.probes, false)
				for _, d := range mc.drops {
					w.checkDrop(t, family, d)
				}
				b.Logf("    IPv%d %s: %d pairs x %d probes as expected (%d rounds, %.1fs)", family, mc.name,
					len(w.pods)*(len(w.pods)-1), len(mc.probes), rounds, time.Since(start).Seconds())
			})
			log.t = t
			if !ok {
				return
			}
		}
	}
}

// The model: namespaces x, y, z with pods a, b, c (labels pod=<name>),
// each pod answering on TCP and UDP 80 (meshecho) and on TCP 81 (a
// listener the test runs in the pod's network namespace).
var (
	matrixNamespaces = []string{"x", "y", "z"}
	matrixPods       = []string{"a", "b", "c"}
)

// mpod is a pod of the model, "ns/pod" as upstream writes it.
type mpod string

func (p mpod) ns() string  { return strings.SplitN(string(p), "/", 2)[0] }
func (p mpod) pod() string { return strings.SplitN(string(p), "/", 2)[1] }

// cluster is where the pod runs: a and b in cluster1, c in cluster2.
func (p mpod) cluster() string {
	if p.pod() == "c" {
		return "cluster2"
	}
	return "cluster1"
}

// msel matches model pods by namespace, pod and cluster; an empty field
// matches any.
type msel struct{ ns, pod, cluster string }

func (s msel) matches(p mpod) bool {
	return (s.ns == "" || s.ns == p.ns()) && (s.pod == "" || s.pod == p.pod()) && (s.cluster == "" || s.cluster == p.cluster())
}

// truth is an expected truth table: for each pair, whether a connection
// from the first pod to the second succeeds.
type truth map[mpod]map[mpod]bool

func newTruth(pods []mpod) truth {
	t := truth{}
	for _, f := range pods {
		t[f] = map[mpod]bool{}
		for _, to := range pods {
			t[f][to] = true
		}
	}
	return t
}

// expect sets every pair from a pod matching from to a pod matching to.
func (t truth) expect(from, to msel, ok bool) {
	for f, row := range t {
		for p := range row {
			if from.matches(f) && to.matches(p) {
				row[p] = ok
			}
		}
	}
}

// diff is upstream's table of expected and observed ("." agrees; "X"
// connected, expected refused; "-" refused, expected connected; loopback
// blank) and the number of wrong cells.
func (t truth) diff(pods []mpod, observed truth) (string, int) {
	var b strings.Builder
	wrong := 0
	fmt.Fprintf(&b, "%-5s", "")
	for _, p := range pods {
		fmt.Fprintf(&b, " %-4s", p)
	}
	b.WriteString("\n")
	for _, f := range pods {
		fmt.Fprintf(&b, "%-5s", f)
		for _, p := range pods {
			c := "."
			switch exp, got := t[f][p], observed[f][p]; {
			case f == p:
				c = " "
			case got && !exp:
				c, wrong = "X", wrong+1
			case exp && !got:
				c, wrong = "-", wrong+1
			}
			fmt.Fprintf(&b, " %-4s", c)
		}
		b.WriteString("\n")
	}
	return b.String(), wrong
}

// matrixProbe is a port and protocol and how its expected table differs
// from "every pair connects".
type matrixProbe struct {
	port   uint16
	proto  string // "tcp" or "udp"
	expect func(truth)
}

// matrixCase is one upstream test (or a cross-cluster variant of one):
// its policies, created in both clusters, and its probes.
type matrixCase struct {
	name     string
	policies func(w *matrixWorld, family int) []*networkingv1.NetworkPolicy
	probes   []matrixProbe
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
	from, to  mpod
	direction string
}

func fixedPolicies(nps ...*networkingv1.NetworkPolicy) func(*matrixWorld, int) []*networkingv1.NetworkPolicy {
	return func(*matrixWorld, int) []*networkingv1.NetworkPolicy {
		out := make([]*networkingv1.NetworkPolicy, len(nps))
		for i, np := range nps {
			out[i] = np.DeepCopy()
		}
		return out
	}
}

func tcpProbe(port uint16, expect func(truth)) matrixProbe {
	return matrixProbe{port: port, proto: "tcp", expect: expect}
}

func udpProbe(port uint16, expect func(truth)) matrixProbe {
	return matrixProbe{port: port, proto: "udp", expect: expect}
}

// Selectors of the model's pods.
var (
	anyPod = msel{}
	xa     = msel{ns: "x", pod: "a"}
	xc     = msel{ns: "x", pod: "c"}
)

// matrixCases are a representative subset of k8s.io/kubernetes v1.37
// test/e2e/network/netpol/network_policy.go (named as there), and
// cross-cluster variants of some (named "across clusters").
var matrixCases = []matrixCase{
	{name: "default-deny-ingress",
		// should support a 'default-deny-ingress' policy (and its UDP
		// context): in both clusters, so x/c is isolated too.
		policies: fixedPolicies(mnetpol("x", "deny-ingress", nil, mingress())),
		probes: []matrixProbe{
			tcpProbe(80, func(r truth) { r.expect(anyPod, msel{ns: "x"}, false) }),
			udpProbe(80, func(r truth) { r.expect(anyPod, msel{ns: "x"}, false) }),
		}},

	{name: "allow from a namespace by NamespaceSelector",
		// should enforce policy to allow traffic only from a different
		// namespace, based on NamespaceSelector. Upstream lets all of y
		// in; here y/c is in cluster2, which the selector (no cluster
		// requirement) does not reach.
		policies: fixedPolicies(mnetpol("x", "allow-client-a-via-ns-selector", mlabels("pod", "a"),
			mingress(mfrom(mnss(msel1(nsNameKey, "y")))))),
		probes: []matrixProbe{tcpProbe(80, func(r truth) {
			r.expect(anyPod, xa, false)
			r.expect(msel{ns: "y", cluster: "cluster1"}, xa, true)
		})},
		drops: []matrixDrop{{"y/c", "x/a", "ingress"}}},

	{name: "allow from a namespace of every cluster by NamespaceSelector and cluster key (across clusters)",
		// The same policy for all of x, its podSelector requiring
		// io.cilium.k8s.policy.cluster to exist: y's pods of both
		// clusters get in, to x's pods of both clusters.
		policies: fixedPolicies(mnetpol("x", "allow-ns-y-every-cluster", nil,
			mingress(mfrom(mpodsInNs(mselExpr(clusterKey, metav1.LabelSelectorOpExists), msel1(nsNameKey, "y")))))),
		probes: []matrixProbe{tcpProbe(80, func(r truth) {
			r.expect(anyPod, msel{ns: "x"}, false)
			r.expect(msel{ns: "y"}, msel{ns: "x"}, true)
		})}},

	{name: "PodSelector and NamespaceSelector",
		// should enforce policy based on PodSelector and
		// NamespaceSelector: y/b and z/b are in x/a's cluster, so the
		// table is upstream's.
		policies: fixedPolicies(mnetpol("x", "allow-ns-y-podselector-and-nsselector", mlabels("pod", "a"),
			mingress(mfrom(mpodsInNs(msel1("pod", "b"), mselExpr(nsNameKey, metav1.LabelSelectorOpNotIn, "x")))))),
		probes: []matrixProbe{tcpProbe(80, func(r truth) {
			r.expect(anyPod, xa, false)
			r.expect(msel{ns: "y", pod: "b"}, xa, true)
			r.expect(msel{ns: "z", pod: "b"}, xa, true)
		})}},

	{name: "Multiple PodSelectors and NamespaceSelectors",
		// should enforce policy based on Multiple PodSelectors and
		// NamespaceSelectors: upstream lets y/b, y/c, z/b, z/c in; y/c
		// and z/c are in cluster2, which the selector does not reach.
		policies: fixedPolicies(mnetpol("x", "allow-ns-y-z-pod-b-c", mlabels("pod", "a"),
			mingress(mfrom(mpodsInNs(mselExpr("pod", metav1.LabelSelectorOpIn, "b", "c"), mselExpr(nsNameKey, metav1.LabelSelectorOpNotIn, "x")))))),
		probes: []matrixProbe{tcpProbe(80, func(r truth) {
			r.expect(anyPod, xa, false)
			r.expect(msel{ns: "y", pod: "b"}, xa, true)
			r.expect(msel{ns: "z", pod: "b"}, xa, true)
		})}},

	{name: "Ports",
		// should enforce policy based on Ports (and the first step of
		// "multiple, stacked policies": port 80 closed to all): x/a
		// accepts namespace y on TCP 81 only; y/c is in cluster2.
		policies: fixedPolicies(mnetpol("x", "allow-client-a-via-ns-selector", mlabels("pod", "a"),
			mingress(mwithPorts(mfrom(mnss(msel1(nsNameKey, "y"))), mport(81, corev1.ProtocolTCP))))),
		probes: []matrixProbe{
			tcpProbe(81, func(r truth) {
				r.expect(anyPod, xa, false)
				r.expect(msel{ns: "y", cluster: "cluster1"}, xa, true)
			}),
			tcpProbe(80, func(r truth) { r.expect(anyPod, xa, false) }),
		}},

	{name: "allow-all on one port (no peer: every cluster)",
		// should allow ingress access on one named port, with the port
		// numbered: a rule without peers lets every cluster in.
		policies: fixedPolicies(mnetpol("x", "allow-all-81", nil,
			mingress(mwithPorts(networkingv1.NetworkPolicyIngressRule{}, mport(81, corev1.ProtocolTCP))))),
		probes: []matrixProbe{
			tcpProbe(81, func(truth) {}),
			tcpProbe(80, func(r truth) { r.expect(anyPod, msel{ns: "x"}, false) }),
		}},

	{name: "deny egress from all pods in a namespace",
		// should deny egress from all pods in a namespace: x's pods of
		// both clusters reach no one.
		policies: fixedPolicies(mnetpol("x", "deny-egress-ns-x", nil, megress())),
		probes:   []matrixProbe{tcpProbe(80, func(r truth) { r.expect(msel{ns: "x"}, anyPod, false) })},
		drops:    []matrixDrop{{"x/c", "y/a", "egress"}}},

	{name: "egress to a server in a CIDR block",
		// should allow egress access to server in CIDR block: y/b's
		// address (/32, /128).
		policies: func(w *matrixWorld, family int) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{mnetpol("x", "allow-client-a-via-cidr-egress-rule", mlabels("pod", "a"),
				megress(mto(mipBlock(w.hostCIDR("y/b", family)))))}
		},
		probes: []matrixProbe{tcpProbe(80, func(r truth) {
			r.expect(xa, anyPod, false)
			r.expect(xa, msel{ns: "y", pod: "b"}, true)
		})}},

	{name: "egress and ingress by a pod's address in the other cluster (across clusters)",
		// The same with the server in the other cluster, both ways (x/a
		// of cluster1 to y/c of cluster2, x/c of cluster2 to y/a of
		// cluster1), and for ingress: z/c of cluster2 accepts only z/a's
		// address. ipBlock selects pods by address, whatever their
		// cluster.
		policies: func(w *matrixWorld, family int) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{
				mnetpol("x", "x-a-egress-to-y-c-by-cidr", mlabels("pod", "a"), megress(mto(mipBlock(w.hostCIDR("y/c", family))))),
				mnetpol("x", "x-c-egress-to-y-a-by-cidr", mlabels("pod", "c"), megress(mto(mipBlock(w.hostCIDR("y/a", family))))),
				mnetpol("z", "z-c-ingress-from-z-a-by-cidr", mlabels("pod", "c"), mingress(mfrom(mipBlock(w.hostCIDR("z/a", family))))),
			}
		},
		probes: []matrixProbe{tcpProbe(80, func(r truth) {
			r.expect(xa, anyPod, false)
			r.expect(xa, msel{ns: "y", pod: "c"}, true)
			r.expect(xc, anyPod, false)
			r.expect(xc, msel{ns: "y", pod: "a"}, true)
			r.expect(anyPod, msel{ns: "z", pod: "c"}, false)
			r.expect(msel{ns: "z", pod: "a"}, msel{ns: "z", pod: "c"}, true)
		})}},

	{name: "except clause in a CIDR block",
		// should enforce except clause while egress access to server in
		// CIDR block: x/a may reach the /4 holding x/b's address (every
		// pod of both clusters) except x/b's own.
		policies: func(w *matrixWorld, family int) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{mnetpol("x", "allow-client-a-via-cidr-egress-rule", mlabels("pod", "a"),
				megress(mto(mipBlock(w.largeCIDR("x/b", family), w.hostCIDR("x/b", family)))))}
		},
		probes: []matrixProbe{tcpProbe(80, func(r truth) { r.expect(xa, msel{ns: "x", pod: "b"}, false) })}},
}

// matrixWorld is the model on the bed.
type matrixWorld struct {
	b        *bed.Bed
	clusters []*bed.Cluster
	pods     []mpod
	byName   map[mpod]*bed.Pod
}

// newMatrixWorld starts cluster1 (two nodes) and cluster2 (one node),
// runs the model's pods (named <ns>-<pod> in the bed, labelled
// pod=<pod>) and connects the clusters.
func newMatrixWorld(t *testing.T, b *bed.Bed) *matrixWorld {
	ctx := t.Context()
	w := &matrixWorld{b: b, byName: map[mpod]*bed.Pod{}}
	for _, spec := range []bed.ClusterSpec{{Name: "cluster1", ID: 1, Nodes: 2}, {Name: "cluster2", ID: 2, Nodes: 1}} {
		c, err := b.AddCluster(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		w.clusters = append(w.clusters, c)
		b.Logf("==> %s: the model's pods", spec.Name)
		for _, ns := range matrixNamespaces {
			for j, name := range matrixPods {
				p := mpod(ns + "/" + name)
				if p.cluster() != spec.Name {
					continue
				}
				pod, err := c.Nodes[j%len(c.Nodes)].AddPod(ctx, ns, ns+"-"+name, mlabels("pod", name))
				if err != nil {
					t.Fatal(err)
				}
				serveTCP81(t, pod)
				w.byName[p] = pod
			}
		}
	}
	for _, ns := range matrixNamespaces {
		for _, name := range matrixPods {
			w.pods = append(w.pods, mpod(ns+"/"+name))
		}
	}
	if err := b.Connect(ctx, "cluster1", "cluster2"); err != nil {
		t.Fatal(err)
	}
	return w
}

// serveTCP81 runs a TCP server on port 81 in the pod's network namespace
// answering each line as meshecho does ("cluster/ns/pod line").
func serveTCP81(t *testing.T, p *bed.Pod) {
	t.Helper()
	var ln net.Listener
	if err := netnsutil.Do(p.NetNS(), func() error {
		var err error
		ln, err = net.Listen("tcp", ":81")
		return err
	}); err != nil {
		t.Fatalf("pod %s: listen on TCP 81: %v", p, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	who := p.String()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				fmt.Fprintf(c, "%s %s\n", who, strings.TrimSuffix(line, "\n"))
			})
		}
	})
}

// clearPolicies deletes every NetworkPolicy of the model's namespaces in
// both clusters.
func (w *matrixWorld) clearPolicies(t *testing.T) {
	t.Helper()
	for _, c := range w.clusters {
		for _, ns := range matrixNamespaces {
			if err := c.Client.NetworkingV1().NetworkPolicies(ns).DeleteCollection(t.Context(), metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
				t.Fatalf("cluster %s: delete the NetworkPolicies of %s: %v", c.Name, ns, err)
			}
		}
	}
}

func (w *matrixWorld) addr(p mpod, family int) netip.Addr {
	if family == 6 {
		return w.byName[p].IP6
	}
	return w.byName[p].IP
}

// hostCIDR is the pod's single-address prefix (/32, /128), as the suite
// writes it from the pod's IP.
func (w *matrixWorld) hostCIDR(p mpod, family int) string {
	a := w.addr(p, family)
	return netip.PrefixFrom(a, a.BitLen()).String()
}

// largeCIDR is the suite's makeLargeCIDRForIP: the /4 holding the pod's
// address.
func (w *matrixWorld) largeCIDR(p mpod, family int) string {
	return netip.PrefixFrom(w.addr(p, family), 4).Masked().String()
}

// probeTimeoutMS bounds a probe: a refused connection is a dropped SYN or
// datagram (no answer), so a refusal costs this much; the pods answer on
// the bed's loopback underlay within milliseconds. A probe that fails by
// timing out too early is probed again (check retries).
const probeTimeoutMS = 500

// probe connects from one pod to another over family and reports whether
// the right pod answered (and why not).
func (w *matrixWorld) probe(ctx context.Context, from, to mpod, family int, mp matrixProbe) (bool, string, error) {
	src, dst := w.byName[from], w.byName[to]
	addr := netip.AddrPortFrom(w.addr(to, family), mp.port).String()
	r, err := src.Dial(ctx, workload.DialRequest{Proto: mp.proto, Addr: addr, Message: "probe", TimeoutMS: probeTimeoutMS})
	if err != nil {
		return false, "", fmt.Errorf("%s: %w", src, err)
	}
	switch {
	case r.Error != "":
		return false, r.Error, nil
	case !strings.HasPrefix(r.Reply, dst.String()+" "):
		return false, fmt.Sprintf("answered %q, not by %s", r.Reply, dst), nil
	}
	return true, "", nil
}

// matrix probes every pair (in parallel) with mp over family.
func (w *matrixWorld) matrix(ctx context.Context, family int, mp matrixProbe) (truth, map[[2]mpod]string, error) {
	observed := newTruth(w.pods)
	why := map[[2]mpod]string{}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 36)
	for _, f := range w.pods {
		for _, to := range w.pods {
			if f == to {
				continue
			}
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				ok, reason, err := w.probe(ctx, f, to, family, mp)
				mu.Lock()
				defer mu.Unlock()
				observed[f][to] = ok
				if reason != "" {
					why[[2]mpod{f, to}] = reason
				}
				if err != nil {
					errs = append(errs, err)
				}
			})
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, nil, errs[0]
	}
	return observed, why, nil
}

// matrixWait bounds how long the policies of a case (or their removal)
// may take to be enforced on every node.
const matrixWait = 30 * time.Second

// check probes the matrix for each of probes until every table is the
// expected one (policies reach the agents through the kube-apiservers:
// the state converges), or fails after matrixWait with the tables'
// differences. allConnect expects every pair to connect instead (the
// state before a case's policies). It returns the number of rounds.
func (w *matrixWorld) check(t *testing.T, family int, probes []matrixProbe, allConnect bool) int {
	t.Helper()
	deadline := time.Now().Add(matrixWait)
	for round := 1; ; round++ {
		var report strings.Builder
		wrong := 0
		for _, mp := range probes {
			want := newTruth(w.pods)
			if !allConnect {
				mp.expect(want)
			}
			observed, why, err := w.matrix(t.Context(), family, mp)
			if err != nil {
				t.Fatal(err)
			}
			table, n := want.diff(w.pods, observed)
			if n == 0 {
				continue
			}
			wrong += n
			fmt.Fprintf(&report, "IPv%d %s/%d: %d of %d pairs differ from the expected truth table (X: connected, expected refused; -: refused, expected connected):\n%s",
				family, strings.ToUpper(mp.proto), mp.port, n, len(w.pods)*(len(w.pods)-1), table)
			for _, f := range w.pods {
				for _, to := range w.pods {
					if f != to && observed[f][to] != want[f][to] {
						fmt.Fprintf(&report, "  %s (%s) -> %s (%s): %s\n", f, f.cluster(), to, to.cluster(), orConnected(why[[2]mpod{f, to}]))
					}
				}
			}
		}
		if wrong == 0 {
			return round
		}
		if time.Now().After(deadline) {
			what := "with the case's policies"
			if allConnect {
				what = "with no policy (every pair connects)"
			}
			t.Fatalf("%s, after %d rounds in %v:\n%s", what, round, matrixWait, report.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkDrop asserts that the agent of the dropping side recorded the
// refusal of d (over family, TCP 80) as policy-denied, with both pods'
// clusters.
func (w *matrixWorld) checkDrop(t *testing.T, family int, d matrixDrop) {
	t.Helper()
	src, dst := w.byName[d.from], w.byName[d.to]
	node := dst.Node
	if d.direction == "egress" {
		node = src.Node
	}
	dstAddr := netip.AddrPortFrom(w.addr(d.to, family), bed.WorkloadPort).String()
	drop, err := node.FindDrop(t.Context(), w.addr(d.from, family).String(), dstAddr)
	if err != nil {
		t.Fatal(err)
	}
	if drop.Direction != d.direction || drop.Reason != "policy-denied" || drop.SrcCluster != d.from.cluster() || drop.DstCluster != d.to.cluster() {
		t.Errorf("drop %s -> %s recorded by %s: %v, want %s policy-denied from %s to %s", d.from, d.to, node.Name, drop,
			d.direction, d.from.cluster(), d.to.cluster())
	}
}

func orConnected(why string) string {
	if why == "" {
		return "connected"
	}
	return why
}

// Builders of the suite's policies (as e2e/netpol's).

const (
	nsNameKey  = "kubernetes.io/metadata.name" // set by Kubernetes on every namespace
	clusterKey = "io.cilium.k8s.policy.cluster"
)

type mnpOption func(*networkingv1.NetworkPolicy)

func mnetpol(ns, name string, podLabels map[string]string, opts ...mnpOption) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: podLabels}}}
	for _, o := range opts {
		o(np)
	}
	return np
}

// mingress adds ingress rules and, the first time, the Ingress policy type:
// mingress() alone isolates for ingress.
func mingress(rules ...networkingv1.NetworkPolicyIngressRule) mnpOption {
	return func(np *networkingv1.NetworkPolicy) {
		if np.Spec.Ingress == nil {
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{}
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		}
		np.Spec.Ingress = append(np.Spec.Ingress, rules...)
	}
}

func megress(rules ...networkingv1.NetworkPolicyEgressRule) mnpOption {
	return func(np *networkingv1.NetworkPolicy) {
		if np.Spec.Egress == nil {
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{}
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
		np.Spec.Egress = append(np.Spec.Egress, rules...)
	}
}

func mfrom(peers ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: peers}
}

func mto(peers ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: peers}
}

func mlabels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func msel1(k, v string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}
}

func mselExpr(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func mnss(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: s}
}

func mpodsInNs(p, n *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: p, NamespaceSelector: n}
}

func mipBlock(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func mport(n int32, proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{IntVal: n}, Protocol: &proto}
}

func mwithPorts(r networkingv1.NetworkPolicyIngressRule, ps ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyIngressRule {
	r.Ports = append(r.Ports, ps...)
	return r
}
