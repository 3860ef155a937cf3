//go:build linux

package scenarios

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/netpol"
	"github.com/clustermesh/clustermesh/e2e/workload"
	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// matrixWorld is the upstream suite's model (e2e/netpol) on the bed:
// namespaces x, y, z in two connected clusters, pods a and b of each
// namespace in cluster1 (a on its first node, b on its second) and pod c
// in cluster2, so every namespace has pairs within a node, across nodes
// and across clusters. Each pod answers on TCP and UDP 80 (meshecho) and
// 81 (servers the test runs in the pod's network namespace), and has the
// model's named container ports.
type matrixWorld struct {
	b        *bed.Bed
	clusters []*bed.Cluster
	pods     []netpol.Pod
	byName   map[netpol.Pod]*bed.Pod
	// podLabels and nsLabels are the labels the pods and namespaces have
	// now (the model's, or a step's relabel).
	podLabels map[netpol.Pod]map[string]string
	nsLabels  map[string]map[string]string
}

// podCluster is where the model's pod runs: a and b in cluster1, c in
// cluster2.
func podCluster(p netpol.Pod) string {
	if p.Name() == "c" {
		return "cluster2"
	}
	return "cluster1"
}

// newMatrixWorld starts cluster1 (two nodes) and cluster2 (one node), their
// agents with agentArgs, runs the model's pods (named <ns>-<pod> in the
// bed) and connects the clusters.
func newMatrixWorld(t *testing.T, b *bed.Bed, agentArgs ...string) *matrixWorld {
	ctx := t.Context()
	w := &matrixWorld{b: b, pods: netpol.Pods(), byName: map[netpol.Pod]*bed.Pod{},
		podLabels: map[netpol.Pod]map[string]string{}, nsLabels: map[string]map[string]string{}}
	var ports []corev1.ContainerPort
	for _, np := range netpol.NamedPorts() {
		ports = append(ports, corev1.ContainerPort{Name: np.Name, ContainerPort: int32(np.Port), Protocol: corev1.Protocol(np.Protocol)})
	}
	for _, spec := range []bed.ClusterSpec{{Name: "cluster1", ID: 1, Nodes: 2, AgentArgs: agentArgs}, {Name: "cluster2", ID: 2, Nodes: 1, AgentArgs: agentArgs}} {
		c, err := b.AddCluster(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		w.clusters = append(w.clusters, c)
		b.Logf("==> %s: the model's namespaces and pods", spec.Name)
		for _, ns := range netpol.Namespaces {
			w.nsLabels[ns] = netpol.NamespaceLabels(ns)
			obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: w.nsLabels[ns]}}
			if _, err := c.Client.CoreV1().Namespaces().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				t.Fatalf("cluster %s: create namespace %s: %v", c.Name, ns, err)
			}
		}
		for _, p := range w.pods {
			if podCluster(p) != spec.Name {
				continue
			}
			w.podLabels[p] = netpol.PodLabels(p)
			node := c.Nodes[slices.Index(netpol.PodNames, p.Name())%len(c.Nodes)]
			pod, err := node.AddPodWith(ctx, p.Namespace(), p.Namespace()+"-"+p.Name(), w.podLabels[p], bed.PodOptions{Ports: ports})
			if err != nil {
				t.Fatal(err)
			}
			serve81(t, pod)
			w.byName[p] = pod
		}
	}
	if err := b.Connect(ctx, "cluster1", "cluster2"); err != nil {
		t.Fatal(err)
	}
	return w
}

// serve81 runs TCP and UDP servers on port 81 in the pod's network
// namespace answering as meshecho does ("cluster/ns/pod line").
func serve81(t *testing.T, p *bed.Pod) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	if err := netnsutil.Do(p.NetNS(), func() error {
		var err error
		if ln, err = net.Listen("tcp", ":81"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", ":81")
		return err
	}); err != nil {
		t.Fatalf("pod %s: listen on port 81: %v", p, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); pc.Close(); wg.Wait() })
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
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(fmt.Appendf(nil, "%s %s", who, strings.TrimSuffix(string(buf[:n]), "\n")), from)
		}
	})
}

// Addr is the pod's address in family (netpol.Addrs).
func (w *matrixWorld) Addr(p netpol.Pod, family int) netip.Addr {
	if family == 6 {
		return w.byName[p].IP6
	}
	return w.byName[p].IP
}

// familyRuns are the families to probe together: IPv4 and IPv6 at once
// when policies are the same for both (the policies of a family select
// the same pods and ports for the other: probing both under one set is
// probing each under its own), else each on its own (rules by address
// name addresses of one family).
func familyRuns(w netpol.Addrs, policies ...func(netpol.Addrs, int) []*networkingv1.NetworkPolicy) [][]int {
	for _, p := range policies {
		if !apiequality.Semantic.DeepEqual(p(w, 4), p(w, 6)) {
			return [][]int{{4}, {6}}
		}
	}
	return [][]int{{4, 6}}
}

// familiesName names a run of familyRuns ("IPv4", "IPv6", "IPv4+IPv6").
func familiesName(families []int) string {
	var names []string
	for _, f := range families {
		names = append(names, fmt.Sprintf("IPv%d", f))
	}
	return strings.Join(names, "+")
}

// clearPolicies deletes every NetworkPolicy of the model's namespaces in
// both clusters.
func (w *matrixWorld) clearPolicies(t *testing.T) {
	t.Helper()
	for _, c := range w.clusters {
		for _, ns := range netpol.Namespaces {
			if err := c.Client.NetworkingV1().NetworkPolicies(ns).DeleteCollection(t.Context(), metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
				t.Fatalf("cluster %s: delete the NetworkPolicies of %s: %v", c.Name, ns, err)
			}
		}
	}
}

// setPolicies makes nps the NetworkPolicies of the model's namespaces in
// both clusters (a policy applies to the pods of the cluster it is
// created in: creating it in both applies it to all of the model's pods,
// as upstream creates it once for all of them): those of the same name
// are updated in place (as upstream's UpdatePolicy), the others created
// or deleted.
func (w *matrixWorld) setPolicies(t *testing.T, nps []*networkingv1.NetworkPolicy) {
	t.Helper()
	ctx := t.Context()
	for _, c := range w.clusters {
		want := map[string]*networkingv1.NetworkPolicy{}
		for _, np := range nps {
			want[np.Namespace+"/"+np.Name] = np
		}
		for _, ns := range netpol.Namespaces {
			api := c.Client.NetworkingV1().NetworkPolicies(ns)
			list, err := api.List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatalf("cluster %s: list the NetworkPolicies of %s: %v", c.Name, ns, err)
			}
			for _, have := range list.Items {
				np, ok := want[ns+"/"+have.Name]
				delete(want, ns+"/"+have.Name)
				switch {
				case !ok:
					err = api.Delete(ctx, have.Name, metav1.DeleteOptions{})
				case !apiequality.Semantic.DeepEqual(have.Spec, np.Spec):
					have.Spec = *np.Spec.DeepCopy()
					_, err = api.Update(ctx, &have, metav1.UpdateOptions{})
				}
				if err != nil {
					t.Fatalf("cluster %s: NetworkPolicy %s/%s: %v", c.Name, ns, have.Name, err)
				}
			}
		}
		for _, np := range want {
			if _, err := c.Client.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np.DeepCopy(), metav1.CreateOptions{}); err != nil {
				t.Fatalf("cluster %s: create NetworkPolicy %s/%s: %v", c.Name, np.Namespace, np.Name, err)
			}
		}
	}
}

// setLabels gives the pods and namespaces the model's labels, or those
// of podLabels and nsLabels where they name them (namespaces in both
// clusters), writing only those that change.
func (w *matrixWorld) setLabels(t *testing.T, podLabels map[netpol.Pod]map[string]string, nsLabels map[string]map[string]string) {
	t.Helper()
	ctx := t.Context()
	for _, p := range w.pods {
		want := netpol.PodLabels(p)
		if l, ok := podLabels[p]; ok {
			want = l
		}
		if maps.Equal(want, w.podLabels[p]) {
			continue
		}
		bp := w.byName[p]
		api := bp.Node.Cluster().Client.CoreV1().Pods(bp.Namespace)
		obj, err := api.Get(ctx, bp.Name, metav1.GetOptions{})
		if err == nil {
			obj.Labels = want
			_, err = api.Update(ctx, obj, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatalf("relabel pod %s: %v", bp, err)
		}
		w.podLabels[p] = want
	}
	for _, ns := range netpol.Namespaces {
		want := netpol.NamespaceLabels(ns)
		if l, ok := nsLabels[ns]; ok {
			want = l
		}
		if maps.Equal(want, w.nsLabels[ns]) {
			continue
		}
		for _, c := range w.clusters {
			api := c.Client.CoreV1().Namespaces()
			obj, err := api.Get(ctx, ns, metav1.GetOptions{})
			if err == nil {
				obj.Labels = want
				_, err = api.Update(ctx, obj, metav1.UpdateOptions{})
			}
			if err != nil {
				t.Fatalf("cluster %s: relabel namespace %s: %v", c.Name, ns, err)
			}
		}
		w.nsLabels[ns] = want
	}
}

// probeTimeoutMS bounds a probe: a refused connection is a dropped SYN or
// datagram (no answer), so a refusal costs this much; the pods answer on
// the bed's loopback underlay within milliseconds. A probe that fails by
// timing out too early is probed again (check retries).
const probeTimeoutMS = 500

// probe connects from one pod to another over family and reports whether
// the right pod answered (and why not).
func (w *matrixWorld) probe(ctx context.Context, from, to netpol.Pod, family int, mp netpol.Probe) (bool, string, error) {
	src, dst := w.byName[from], w.byName[to]
	addr := netip.AddrPortFrom(w.Addr(to, family), mp.Port).String()
	r, err := src.Dial(ctx, workload.DialRequest{Proto: strings.ToLower(mp.Proto), Addr: addr, Message: "probe", TimeoutMS: probeTimeoutMS})
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

// observed is one probe's outcome for every pair, and why a pair did not
// connect.
type observed struct {
	ok  map[netpol.Pod]map[netpol.Pod]bool
	why map[[2]netpol.Pod]string
}

// matrix probes every pair (in parallel) with mp over family.
func (w *matrixWorld) matrix(ctx context.Context, family int, mp netpol.Probe) (observed, error) {
	o := observed{ok: map[netpol.Pod]map[netpol.Pod]bool{}, why: map[[2]netpol.Pod]string{}}
	for _, p := range w.pods {
		o.ok[p] = map[netpol.Pod]bool{}
	}
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
				o.ok[f][to] = ok
				if reason != "" {
					o.why[[2]netpol.Pod{f, to}] = reason
				}
				if err != nil {
					errs = append(errs, err)
				}
			})
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		return observed{}, errs[0]
	}
	return o, nil
}

// matrixWait bounds how long policies or labels may take to be enforced
// on every node.
const matrixWait = 30 * time.Second

// check probes the matrix for each family and probe until every table is
// the expected one (policies and labels reach the agents through the
// kube-apiservers: the state converges), or fails after matrixWait with
// the tables' differences. allConnect expects every pair to connect
// instead (the state with no policy). It returns the number of rounds.
func (w *matrixWorld) check(t *testing.T, families []int, probes []netpol.Probe, allConnect bool) int {
	t.Helper()
	deadline := time.Now().Add(matrixWait)
	for round := 1; ; round++ {
		var report strings.Builder
		wrong := 0
		for _, family := range families {
			for _, mp := range probes {
				want := netpol.NewReachability(w.pods, true)
				if !allConnect {
					mp.Expect(want)
				}
				o, err := w.matrix(t.Context(), family, mp)
				if err != nil {
					t.Fatal(err)
				}
				table, n := want.Diff(o.ok)
				if n == 0 {
					continue
				}
				wrong += n
				fmt.Fprintf(&report, "IPv%d %s/%d: %d of %d pairs differ from the expected truth table (X: connected, expected refused; -: refused, expected connected):\n%s",
					family, mp.Proto, mp.Port, n, len(w.pods)*(len(w.pods)-1), table)
				for _, f := range w.pods {
					for _, to := range w.pods {
						if f != to && o.ok[f][to] != want.Expected(f, to) {
							fmt.Fprintf(&report, "  %s (%s) -> %s (%s): %s\n", f, podCluster(f), to, podCluster(to), orConnected(o.why[[2]netpol.Pod{f, to}]))
						}
					}
				}
			}
		}
		if wrong == 0 {
			return round
		}
		if time.Now().After(deadline) {
			what := "with the policies"
			if allConnect {
				what = "with no policy (every pair connects)"
			}
			t.Fatalf("%s, after %d rounds in %v:\n%s", what, round, matrixWait, report.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkDrop asserts that the agent of the dropping side recorded the
// refusal of from → to (over family, TCP 80) as policy-denied in
// direction, with both pods' clusters.
func (w *matrixWorld) checkDrop(t *testing.T, family int, from, to netpol.Pod, direction string) {
	t.Helper()
	src, dst := w.byName[from], w.byName[to]
	node := dst.Node
	if direction == "egress" {
		node = src.Node
	}
	dstAddr := netip.AddrPortFrom(w.Addr(to, family), bed.WorkloadPort).String()
	drop, err := node.FindDrop(t.Context(), w.Addr(from, family).String(), dstAddr)
	if err != nil {
		t.Fatal(err)
	}
	if drop.Direction != direction || drop.Reason != "policy-denied" || drop.SrcCluster != podCluster(from) || drop.DstCluster != podCluster(to) {
		t.Errorf("drop %s -> %s recorded by %s: %v, want %s policy-denied from %s to %s", from, to, node.Name, drop,
			direction, podCluster(from), podCluster(to))
	}
}

func orConnected(why string) string {
	if why == "" {
		return "connected"
	}
	return why
}
