//go:build linux

package scenarios

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/starwars"
	"github.com/clustermesh/clustermesh/e2e/workload"
)

// TestIPv6Only runs TestDualStack's four checks on an IPv6-only pair of
// clusters (bed.FamilyIPv6: nodes with only an IPv6 underlay address and
// InternalIP, IPv6 pod CIDRs and pods, an IPv6 Service CIDR only): pod to
// pod across clusters, encrypted by WireGuard over the IPv6 underlay; the
// addresses of every Node and Pod IPv6 only, and the pairs reachable both
// ways; the IPv4 bed's global-Service scenario (affinity local, failover
// to the peer and back, remote, none, a Service global in one cluster
// only) through the IPv6 ClusterIPs; the cross-cluster policy enforced,
// its drop recorded with IPv6 addresses. Then the bed's
// plain nodes (the benchmarks' baseline) with IPv6 pod CIDRs.
func TestIPv6Only(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts whole clusters (kube-apiservers, controller managers, clustermesh-apiservers, agents, pods)")
	}
	log := &testLog{t: t}
	b := startBedWith(t, log, bed.Options{Family: bed.FamilyIPv6})
	w, err := starwars.New(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		f    func(*testing.T, *starwars.World)
	}{
		{"PodToPodIPv6Encrypted", testPodToPodIPv6OnlyEncrypted},
		{"OnlyIPv6Addresses", testOnlyIPv6Addresses},
		{"GlobalServiceIPv6", testGlobalServiceIPv6Only},
		{"CrossClusterPolicyIPv6", testCrossClusterPolicyIPv6},
		{"PlainNodesIPv6", testPlainNodesIPv6},
	}
	for _, s := range steps {
		ok := t.Run(s.name, func(t *testing.T) { log.t = t; s.f(t, w) })
		log.t = t
		if !ok {
			return
		}
	}
}

// Pod to pod across clusters at the pods' (IPv6) addresses, through
// WireGuard over the IPv6 underlay: the capture sees WireGuard over IPv6
// only and never the payload in clear (a plaintext IPv6 control datagram
// between two nodes is seen); each node's WireGuard peers are at IPv6
// endpoints, with a handshake between the nodes that talked.
func testPodToPodIPv6OnlyEncrypted(t *testing.T, w *starwars.World) {
	b := w.Bed
	pairs := crossPairs(w)
	for _, p := range pairs {
		for _, pod := range p {
			if !pod.IP.Is6() || pod.IP != pod.IP6 || !pod.Node.PodCIDR6.Contains(pod.IP6) {
				t.Fatalf("pod %s: addresses %v, %v, want one IPv6 address in its node's %v", pod, pod.IP, pod.IP6, pod.Node.PodCIDR6)
			}
		}
		reachAt(t, b, p[0], p[1], p[1].Addr6())
	}
	res := checkIPv6Encrypted(t, b, pairs, "MARKER6ONLY-", "CONTROL6ONLY-")
	t.Logf("underlay capture: %d frames, %d WireGuard (%d over IPv6), %d with the pods' marker, %d with the plaintext control's",
		res.Frames, res.WireGuard, res.WireGuard6, res.WithMarker[res.marker], res.WithMarker[res.control])
	marker, control := res.marker, res.control
	if res.WithMarker[control] == 0 {
		t.Errorf("the capture did not see the plaintext control datagram: it cannot tell whether pod traffic is encrypted")
	}
	if res.WithMarker[marker] != 0 {
		t.Errorf("frames with the pods' payload marker on the underlay: %d, want 0 (pod traffic must be encrypted)", res.WithMarker[marker])
	}
	if res.WireGuard6 < 60 || res.WireGuard6 != res.WireGuard {
		t.Errorf("WireGuard frames on the underlay: %d, %d over IPv6; want the 60 exchanges at least, all over IPv6", res.WireGuard, res.WireGuard6)
	}
	for _, p := range pairs {
		from, to := p[0].Node, p[1].Node
		peers, err := from.WireGuardPeers()
		if err != nil {
			t.Fatal(err)
		}
		for ep := range peers {
			if a, err := netip.ParseAddr(ep); err != nil || !a.Unmap().Is6() {
				t.Errorf("node %s: WireGuard peer endpoint %q, want an IPv6 address: peers %v", from.Name, ep, peers)
			}
		}
		if hs, ok := peers[to.IP6.String()]; !ok || hs.IsZero() {
			t.Errorf("node %s: no WireGuard handshake with %s (%v): peers %v", from.Name, to.Name, to.IP6, peers)
		}
	}
}

// Every Node has only IPv6 InternalIPs and pod CIDRs, every Pod only IPv6
// pod and host IPs (as the bed wrote them, read back from the
// kube-apiservers); the pairs reach each other both ways.
func testOnlyIPv6Addresses(t *testing.T, w *starwars.World) {
	ctx, b := t.Context(), w.Bed
	is6 := func(what, s string) {
		t.Helper()
		if a, err := netip.ParseAddr(s); err != nil || !a.Is6() {
			t.Errorf("%s %q, want an IPv6 address", what, s)
		}
	}
	for _, c := range b.Clusters() {
		for _, n := range c.Nodes {
			if !n.IP.Is6() || n.IP != n.IP6 || !n.PodCIDR.Addr().Is6() || n.PodCIDR != n.PodCIDR6 {
				t.Errorf("node %s: underlay %v, pod CIDR %v, want IPv6 ones only", n.Name, n.IP, n.PodCIDR)
			}
		}
		nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes.Items {
			internal := 0
			for _, a := range n.Status.Addresses {
				if a.Type == "InternalIP" {
					internal++
					is6("Node "+n.Name+" InternalIP", a.Address)
				}
			}
			if internal != 1 || len(n.Spec.PodCIDRs) != 1 {
				t.Errorf("Node %s: %d InternalIPs, pod CIDRs %v, want one IPv6 of each", n.Name, internal, n.Spec.PodCIDRs)
			}
			for _, p := range n.Spec.PodCIDRs {
				if pp, err := netip.ParsePrefix(p); err != nil || !pp.Addr().Is6() {
					t.Errorf("Node %s: pod CIDR %q, want an IPv6 one", n.Name, p)
				}
			}
		}
		pods, err := c.Client.CoreV1().Pods(starwars.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if len(p.Status.PodIPs) != 1 || len(p.Status.HostIPs) != 1 {
				t.Errorf("Pod %s/%s: pod IPs %v, host IPs %v, want one IPv6 of each", c.Name, p.Name, p.Status.PodIPs, p.Status.HostIPs)
			}
			is6("Pod "+c.Name+"/"+p.Name+" IP", p.Status.PodIP)
			for _, ip := range p.Status.PodIPs {
				is6("Pod "+c.Name+"/"+p.Name+" IP", ip.IP)
			}
			for _, ip := range p.Status.HostIPs {
				is6("Pod "+c.Name+"/"+p.Name+" host IP", ip.IP)
			}
		}
	}
	for _, p := range crossPairs(w) {
		reachAt(t, b, p[1], p[0], p[0].Addr())
	}
}

// The IPv4 bed's global-Service scenario (testGlobalService) on the
// IPv6-only pair: rebel-base's one ClusterIP is IPv6 in each cluster, and
// through it x-wing of cluster1 gets local backends (affinity local),
// cluster2's when cluster1's stop being ready, and its own again; remote;
// none uses both; the lonely Service (global in cluster1 only, IPv6 too)
// is served in each cluster by its own backends.
func testGlobalServiceIPv6Only(t *testing.T, w *starwars.World) {
	for _, c := range w.Bed.Clusters() {
		addrs, err := c.ServiceAddrs(t.Context(), starwars.Namespace, "rebel-base")
		if err != nil {
			t.Fatal(err)
		}
		if len(addrs) != 1 || !netip.MustParseAddrPort(addrs[0]).Addr().Is6() || addrs[0] != w.RebelBase[c.Name] {
			t.Fatalf("%s: rebel-base ClusterIPs %v, want one IPv6 one", c.Name, addrs)
		}
	}
	globalServiceOver(t, w, bed.FamilyIPv6)
}

// Two plain nodes (no agent) with IPv6 pod CIDRs, so on the IPv6
// underlay, routing each other's pod CIDR: their pods talk.
func testPlainNodesIPv6(t *testing.T, w *starwars.World) {
	ctx, b := t.Context(), w.Bed
	m1, err := b.AddPlainNode(ctx, "m61", 91, netip.MustParsePrefix("fd00:91::/64"))
	if err != nil {
		t.Fatal(err)
	}
	m2, err := b.AddPlainNode(ctx, "m62", 92, netip.MustParsePrefix("fd00:92::/64"))
	if err != nil {
		t.Fatal(err)
	}
	if !m1.IP.Is6() || !m2.IP.Is6() {
		t.Fatalf("plain nodes at %v and %v, want IPv6 underlay addresses", m1.IP, m2.IP)
	}
	if err := m1.RouteVia(m2); err != nil {
		t.Fatal(err)
	}
	if err := m2.RouteVia(m1); err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(m2.PodIP, bed.WorkloadPort).String()
	if err := b.WaitUntil(ctx, 30*time.Second, "m61's pod -> m62's pod at "+addr, func(ctx context.Context) (bool, string) {
		r, err := m1.Pod.Dial(ctx, workload.DialRequest{Addr: addr, Message: "ping", TimeoutMS: 1000})
		if err != nil {
			return false, err.Error()
		}
		return r.Error == "" && strings.HasPrefix(r.Reply, "plain/default/m62 "), r.Reply + r.Error
	}); err != nil {
		t.Fatal(err)
	}
}
