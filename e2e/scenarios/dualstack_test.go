//go:build linux

package scenarios

import (
	"crypto/rand"
	"io/fs"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/starwars"
	"github.com/clustermesh/clustermesh/examples"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

// TestDualStack runs the story on a dual-stack pair of clusters (every
// node, pod and kube-apiserver with both families): pod to pod across
// clusters over IPv6, encrypted, and over IPv4; a dual-stack global
// Service through its IPv6 and IPv4 ClusterIPs; the IPv4 bed's
// global-Service scenario (affinity local, failover to the peer and back,
// remote, none, a Service global in one cluster only) through the IPv6
// ClusterIPs of rebel-base made dual-stack; the cross-cluster policy
// enforced over IPv6, its drop recorded with IPv6 addresses.
func TestDualStack(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts whole clusters (kube-apiservers, controller managers, clustermesh-apiservers, agents, pods)")
	}
	log := &testLog{t: t}
	b := startBedWith(t, log, bed.Options{DualStack: true})
	w, err := starwars.New(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		f    func(*testing.T, *starwars.World)
	}{
		{"PodToPodIPv6Encrypted", testPodToPodIPv6Encrypted},
		{"PodToPodIPv4", testPodToPodIPv4DualStack},
		{"GlobalServiceIPv6", testGlobalServiceIPv6},
		{"GlobalServiceScenarioIPv6", testGlobalServiceScenarioDualStack},
		{"CrossClusterPolicyIPv6", testCrossClusterPolicyIPv6},
	}
	for _, s := range steps {
		ok := t.Run(s.name, func(t *testing.T) { log.t = t; s.f(t, w) })
		log.t = t
		if !ok {
			return
		}
	}
}

// ipv6Capture is the underlay capture of checkIPv6Encrypted and the
// strings it looked for.
type ipv6Capture struct {
	bed.CaptureResult
	marker, control string
}

// checkIPv6Encrypted checks that the nodes of each pair's source give the
// destination pod's IPv6 address the identity its own node gives it, then
// captures the underlay while the pairs exchange a marker 20 times each
// over IPv6 and a node sends a plaintext IPv6 control datagram (so that
// the capture can tell), and returns what it saw; the caller checks.
func checkIPv6Encrypted(t *testing.T, b *bed.Bed, pairs [][2]*bed.Pod, markerTag, controlTag string) ipv6Capture {
	t.Helper()
	for _, p := range pairs {
		to := p[1]
		want, err := to.Node.Identity(t.Context(), to.IP6.String())
		if err != nil {
			t.Fatal(err)
		}
		got, err := p[0].Node.Identity(t.Context(), to.IP6.String())
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("node %s: identity %d for %s (%v), want %d as %s has it", p[0].Node.Name, got, to, to.IP6, want, to.Node.Name)
		}
	}
	marker := markerTag + rand.Text()
	capture, err := b.CaptureUnderlay()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		for range 20 {
			r := dial(t, p[0], p[1].Addr6(), strings.Repeat(marker, 10))
			if r.Error != "" || !strings.Contains(r.Reply, marker) {
				capture.Stop(0)
				t.Fatalf("%s -> %s at %s during the capture: %+v", p[0], p[1], p[1].Addr6(), r)
			}
		}
	}
	n1, n2 := b.Cluster("cluster1").Nodes[0], b.Cluster("cluster2").Nodes[0]
	control := controlTag + rand.Text()
	if err := n1.SendUDP(netip.AddrPortFrom(n2.IP6, 9).String(), []byte(control)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the capture reads the plaintext IPv6 control datagram", func() bool { return capture.Seen(control) })
	return ipv6Capture{CaptureResult: capture.Stop(wireguardPort, marker, control), marker: marker, control: control}
}

// The pairs that talk across clusters.
func crossPairs(w *starwars.World) [][2]*bed.Pod {
	return [][2]*bed.Pod{
		{w.Pod("cluster1/x-wing"), w.Pod("cluster2/rebel-base-a")},
		{w.Pod("cluster2/x-wing"), w.Pod("cluster1/rebel-base-a")},
		{w.Pod("cluster1/tie-fighter"), w.Pod("cluster2/rebel-base-b")},
	}
}

// Pod to pod across clusters at the pods' IPv6 addresses, through
// WireGuard: the underlay never carries the payload in clear (a plaintext
// IPv6 control datagram between two nodes is seen), and the nodes that
// talked have a handshake with each other.
func testPodToPodIPv6Encrypted(t *testing.T, w *starwars.World) {
	b := w.Bed
	pairs := crossPairs(w)
	for _, p := range pairs {
		for _, pod := range p {
			if !pod.IP6.Is6() || !pod.Node.PodCIDR6.Contains(pod.IP6) {
				t.Fatalf("pod %s: IPv6 address %v, want one in its node's %v", pod, pod.IP6, pod.Node.PodCIDR6)
			}
		}
		reachAt(t, b, p[0], p[1], p[1].Addr6())
	}
	res := checkIPv6Encrypted(t, b, pairs, "MARKER6-", "CONTROL6-")
	t.Logf("underlay capture: %d frames, %d WireGuard, %d with the pods' marker, %d with the plaintext control's",
		res.Frames, res.WireGuard, res.WithMarker[res.marker], res.WithMarker[res.control])
	marker, control := res.marker, res.control
	if res.WithMarker[control] == 0 {
		t.Errorf("the capture did not see the plaintext control datagram: it cannot tell whether pod traffic is encrypted")
	}
	if res.WithMarker[marker] != 0 {
		t.Errorf("frames with the pods' payload marker on the underlay: %d, want 0 (pod traffic over IPv6 must be encrypted)", res.WithMarker[marker])
	}
	if res.WireGuard < 60 {
		t.Errorf("WireGuard frames on the underlay: %d, want the 60 exchanges at least", res.WireGuard)
	}
	for _, p := range pairs {
		from, to := p[0].Node, p[1].Node
		peers, err := from.WireGuardPeers()
		if err != nil {
			t.Fatal(err)
		}
		hs, ok := peers[to.IP.String()]
		if !ok {
			hs, ok = peers[to.IP6.String()]
		}
		if !ok || hs.IsZero() {
			t.Errorf("node %s: no WireGuard handshake with %s (%v, %v): peers %v", from.Name, to.Name, to.IP, to.IP6, peers)
		}
	}
}

// The same pairs at the pods' IPv4 addresses, on the dual-stack bed.
func testPodToPodIPv4DualStack(t *testing.T, w *starwars.World) {
	for _, p := range crossPairs(w) {
		reachAt(t, w.Bed, p[0], p[1], p[1].Addr())
		reachAt(t, w.Bed, p[1], p[0], p[0].Addr())
	}
}

// dualStackService is rebel-base as a dual-stack global Service, IPv6
// first, with remote affinity: its clients use the peer's backends.
const dualStackService = `
apiVersion: v1
kind: Service
metadata:
  name: rebel-base-ds
  namespace: default
  annotations:
    service.cilium.io/global: "true"
    service.cilium.io/shared: "true"
    service.cilium.io/affinity: "remote"
spec:
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv6, IPv4]
  selector:
    name: rebel-base
  ports:
  - name: http
    port: 80
    targetPort: 80
`

// A dual-stack global Service: x-wing of cluster1 reaches cluster2's
// backends through the Service's IPv6 ClusterIP (and its IPv4 one).
func testGlobalServiceIPv6(t *testing.T, w *starwars.World) {
	ctx, b := t.Context(), w.Bed
	for _, c := range b.Clusters() {
		if err := c.Apply(ctx, dualStackService); err != nil {
			t.Fatal(err)
		}
	}
	addrs, err := b.Cluster("cluster1").ServiceAddrs(ctx, starwars.Namespace, "rebel-base-ds")
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 2 || !netip.MustParseAddrPort(addrs[0]).Addr().Is6() || !netip.MustParseAddrPort(addrs[1]).Addr().Is4() {
		t.Fatalf("rebel-base-ds ClusterIPs %v, want an IPv6 one then an IPv4 one", addrs)
	}
	xwing := w.Pod("cluster1/x-wing")
	for _, addr := range addrs {
		tally, err := w.WaitTally(ctx, xwing, addr, 10, 60*time.Second, "rebel-base-ds at "+addr+": only cluster2's backends",
			func(t starwars.Tally) bool { return t.Only("cluster2") })
		if err != nil {
			t.Fatal(err)
		}
		b.Logf("    x-wing -> rebel-base-ds (%s): %v", addr, tally)
	}
}

// The IPv4 bed's global-Service scenario (testGlobalService) over IPv6:
// rebel-base (examples/global-service.yaml, applied without
// ipFamilyPolicy, so IPv4 only) made dual-stack in both clusters, keeping
// its IPv4 ClusterIP; through its IPv6 ClusterIP, x-wing of cluster1 gets
// local backends (affinity local), cluster2's when cluster1's stop being
// ready, and its own again; remote; none uses both; the lonely Service
// (dual-stack, as the bed creates Services in a dual-stack bed) is served
// in each cluster by its own backends. Then the IPv4 ClusterIP serves
// from both clusters too (affinity none).
func testGlobalServiceScenarioDualStack(t *testing.T, w *starwars.World) {
	ctx := t.Context()
	for _, c := range w.Bed.Clusters() {
		addrs, err := c.RequireDualStack(ctx, starwars.Namespace, "rebel-base")
		if err != nil {
			t.Fatal(err)
		}
		if addrs[0] != w.RebelBase[c.Name] || !netip.MustParseAddrPort(addrs[1]).Addr().Is6() {
			t.Fatalf("%s: rebel-base made dual-stack has ClusterIPs %v, want %s then an IPv6 one", c.Name, addrs, w.RebelBase[c.Name])
		}
	}
	globalServiceOver(t, w, bed.FamilyIPv6)
	svc4 := w.RebelBase["cluster1"]
	tally, err := w.WaitTally(ctx, w.Pod("cluster1/x-wing"), svc4, 30, 60*time.Second, "rebel-base at "+svc4+" (affinity none): both clusters",
		func(t starwars.Tally) bool { return t.Only("cluster1", "cluster2") })
	if err != nil {
		t.Fatal(err)
	}
	w.Bed.Logf("    x-wing -> rebel-base (%s, affinity none): %v", svc4, tally)
}

// Cilium's cross-cluster policy example over IPv6: tie-fighter of
// cluster1 is refused by rebel-base of cluster2 at its IPv6 address, the
// drop is recorded with the IPv6 addresses and both identities; x-wing is
// let in.
func testCrossClusterPolicyIPv6(t *testing.T, w *starwars.World) {
	ctx, b := t.Context(), w.Bed
	raw, err := fs.ReadFile(examples.Manifests, "cross-cluster-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(raw), "\n---\n")
	if err := b.Cluster("cluster1").Apply(ctx, docs[0]); err != nil {
		t.Fatal(err)
	}
	if err := b.Cluster("cluster2").Apply(ctx, docs[1]); err != nil {
		t.Fatal(err)
	}
	tie, base := w.Pod("cluster1/tie-fighter"), w.Pod("cluster2/rebel-base-a")
	refusedAt(t, b, tie, base, base.Addr6())
	drop, err := base.Node.FindDrop(ctx, tie.IP6.String(), base.Addr6())
	if err != nil {
		t.Fatal(err)
	}
	b.Logf("    recorded by %s: %v", base.Node.Name, drop)
	tieID, err := base.Node.Identity(ctx, tie.IP6.String())
	if err != nil {
		t.Fatal(err)
	}
	baseID, err := base.Node.Identity(ctx, base.IP6.String())
	if err != nil {
		t.Fatal(err)
	}
	src, err1 := netip.ParseAddrPort(drop.Src)
	dst, err2 := netip.ParseAddrPort(drop.Dst)
	if err1 != nil || err2 != nil || src.Addr() != tie.IP6 || dst != netip.AddrPortFrom(base.IP6, bed.WorkloadPort) {
		t.Errorf("drop record %v: addresses %s -> %s, want %v -> %s", drop, drop.Src, drop.Dst, tie.IP6, base.Addr6())
	}
	if drop.Direction != "ingress" || drop.Reason != "policy-denied" || drop.Protocol != 6 || drop.SrcIdentity != tieID ||
		drop.DstIdentity != baseID || drop.SrcCluster != "cluster1" || drop.DstCluster != "cluster2" {
		t.Errorf("drop record %v, want ingress TCP identity %d (cluster1) -> %d (cluster2): policy-denied", drop, tieID, baseID)
	}
	refusedAt(t, b, tie, base, base.Addr())
	reachAt(t, b, w.Pod("cluster1/x-wing"), base, base.Addr6())
	reachAt(t, b, w.Pod("cluster1/x-wing"), w.Pod("cluster2/rebel-base-b"), w.Pod("cluster2/rebel-base-b").Addr6())
}
