//go:build linux

package scenarios

import (
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/starwars"
	"github.com/clustermesh/clustermesh/examples"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

const wireguardPort = 51871 // the agent's default --wireguard-port

// Scenario 1: pod to pod across clusters by IP, both ways, through
// WireGuard: the underlay never carries the payload in clear, and the
// nodes that talked have a handshake with each other.
func testPodToPodEncrypted(t *testing.T, w *starwars.World) {
	b := w.Bed
	pairs := [][2]*bed.Pod{
		{w.Pod("cluster1/x-wing"), w.Pod("cluster2/rebel-base-a")},
		{w.Pod("cluster2/x-wing"), w.Pod("cluster1/rebel-base-a")},
		{w.Pod("cluster1/tie-fighter"), w.Pod("cluster2/rebel-base-b")},
	}
	for _, p := range pairs {
		reach(t, b, p[0], p[1])
	}
	marker := "MARKER-" + rand.Text()
	capture, err := b.CaptureUnderlay()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		for range 20 {
			r := dial(t, p[0], p[1].Addr(), strings.Repeat(marker, 10))
			if r.Error != "" || !strings.Contains(r.Reply, marker) {
				capture.Stop(0)
				t.Fatalf("%s -> %s during the capture: %+v", p[0], p[1], r)
			}
		}
	}
	// The control: the same marker sent in clear between two nodes is seen.
	n1, n2 := b.Cluster("cluster1").Nodes[0], b.Cluster("cluster2").Nodes[0]
	control := "CONTROL-" + rand.Text()
	if err := n1.SendUDP(n2.IP.String()+":9", []byte(control)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the capture reads the plaintext control datagram", func() bool { return capture.Seen(control) })
	res := capture.Stop(wireguardPort, marker, control)
	t.Logf("underlay capture: %d frames, %d WireGuard, %d with the pods' marker, %d with the plaintext control's",
		res.Frames, res.WireGuard, res.WithMarker[marker], res.WithMarker[control])
	if res.WithMarker[control] == 0 {
		t.Errorf("the capture did not see the plaintext control datagram: it cannot tell whether pod traffic is encrypted")
	}
	if res.WithMarker[marker] != 0 {
		t.Errorf("frames with the pods' payload marker on the underlay: %d, want 0 (pod traffic must be encrypted)", res.WithMarker[marker])
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
		if hs, ok := peers[to.IP.String()]; !ok || hs.IsZero() {
			t.Errorf("node %s: no WireGuard handshake with %s (%v): peers %v", from.Name, to.Name, to.IP, peers)
		}
	}
}

// Scenario 2: the global Service rebel-base (examples/global-service.yaml,
// affinity local) from x-wing of cluster1: local backends; cluster2's when
// cluster1's stop being ready, and back; remote; none uses both. A
// Service of the same name that is not global in a peer is never used.
func testGlobalService(t *testing.T, w *starwars.World) { globalServiceOver(t, w, bed.FamilyIPv4) }

// globalServiceOver is scenario 2 through the Services' ClusterIPs of
// family fam (bed.FamilyIPv4 or bed.FamilyIPv6), so that the dual-stack
// and IPv6-only beds run it over IPv6.
func globalServiceOver(t *testing.T, w *starwars.World, fam bed.AddrFamily) {
	ctx, b := t.Context(), w.Bed
	c1, c2 := b.Cluster("cluster1"), b.Cluster("cluster2")
	xwing := w.Pod("cluster1/x-wing")
	svc, err := c1.ServiceAddrOf(ctx, starwars.Namespace, "rebel-base", fam)
	if err != nil {
		t.Fatal(err)
	}
	expect := func(what string, clusters ...string) {
		t.Helper()
		tally, err := w.WaitTally(ctx, xwing, svc, 10, 60*time.Second, what, func(t starwars.Tally) bool { return t.Only(clusters...) })
		if err != nil {
			t.Fatal(err)
		}
		b.Logf("    x-wing -> rebel-base (%s): %v", svc, tally)
	}
	expect("affinity local: only cluster1's backends", "cluster1")
	setReady := func(ready bool) {
		t.Helper()
		for _, n := range []string{"rebel-base-a", "rebel-base-b"} {
			if err := w.Pod("cluster1/"+n).SetReady(ctx, ready); err != nil {
				t.Fatal(err)
			}
		}
	}
	setReady(false)
	expect("cluster1's backends not ready: cluster2's take over", "cluster2")
	setReady(true)
	expect("cluster1's backends ready again: traffic returns", "cluster1")
	for _, key := range []string{"service.cilium.io/affinity", "io.cilium/service-affinity"} {
		if err := c1.Annotate(ctx, starwars.Namespace, "rebel-base", map[string]string{"service.cilium.io/affinity": "", key: "remote"}); err != nil {
			t.Fatal(err)
		}
		expect(key+": remote: only cluster2's backends", "cluster2")
		if err := c1.Annotate(ctx, starwars.Namespace, "rebel-base", map[string]string{key: ""}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c1.Annotate(ctx, starwars.Namespace, "rebel-base", map[string]string{"service.cilium.io/affinity": "none"}); err != nil {
		t.Fatal(err)
	}
	tally, err := w.WaitTally(ctx, xwing, svc, 30, 60*time.Second, "affinity none: both clusters", func(t starwars.Tally) bool { return t.Only("cluster1", "cluster2") })
	if err != nil {
		t.Fatal(err)
	}
	b.Logf("    x-wing -> rebel-base (affinity none): %v", tally)

	// "lonely" is global in cluster1 and not in cluster2: cluster1's
	// clients never reach cluster2's backends, and cluster2's clients
	// only their own.
	sel := map[string]string{"name": "rebel-base"}
	lonely := func(c *bed.Cluster, annotations map[string]string) string {
		t.Helper()
		if _, err := c.CreateService(ctx, starwars.Namespace, "lonely", sel, annotations); err != nil {
			t.Fatal(err)
		}
		addr, err := c.ServiceAddrOf(ctx, starwars.Namespace, "lonely", fam)
		if err != nil {
			t.Fatal(err)
		}
		return addr
	}
	lonely1 := lonely(c1, map[string]string{"service.cilium.io/global": "true"})
	lonely2 := lonely(c2, nil)
	for _, c := range []struct {
		from *bed.Pod
		addr string
		own  string
	}{{xwing, lonely1, "cluster1"}, {w.Pod("cluster2/x-wing"), lonely2, "cluster2"}} {
		if _, err := w.WaitTally(ctx, c.from, c.addr, 5, 60*time.Second, "lonely served in "+c.own, func(t starwars.Tally) bool { return t.Only(c.own) }); err != nil {
			t.Fatal(err)
		}
		tally, err := starwars.Ask(ctx, c.from, c.addr, 30)
		if err != nil {
			t.Fatal(err)
		}
		if !tally.Only(c.own) {
			t.Errorf("%s -> lonely: %v, want only %s (the other cluster's Service is not global)", c.from, tally, c.own)
		}
	}
}

// Scenario 3: Cilium's cross-cluster policy example (kind changed): x-wing
// of cluster1 reaches rebel-base of cluster2, tie-fighter is dropped. The
// same with a Kubernetes NetworkPolicy selecting a peer cluster's pods.
func testCrossClusterPolicy(t *testing.T, w *starwars.World) {
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
	refused(t, b, tie, base)
	// The drop is recorded by the agent of rebel-base-a's node, with both
	// identities, the clusters and the reason.
	drop, err := base.Node.FindDrop(ctx, tie.IP.String(), base.Addr())
	if err != nil {
		t.Fatal(err)
	}
	b.Logf("    recorded by %s: %v", base.Node.Name, drop)
	tieID, err := base.Node.Identity(ctx, tie.IP.String())
	if err != nil {
		t.Fatal(err)
	}
	baseID, err := base.Node.Identity(ctx, base.IP.String())
	if err != nil {
		t.Fatal(err)
	}
	if drop.Direction != "ingress" || drop.Reason != "policy-denied" || drop.Protocol != 6 || drop.SrcIdentity != tieID ||
		drop.DstIdentity != baseID || drop.SrcCluster != "cluster1" || drop.DstCluster != "cluster2" {
		t.Errorf("drop record %v, want ingress TCP identity %d (cluster1) -> %d (cluster2): policy-denied", drop, tieID, baseID)
	}
	reach(t, b, w.Pod("cluster1/x-wing"), w.Pod("cluster2/rebel-base-a"))
	reach(t, b, w.Pod("cluster1/x-wing"), w.Pod("cluster2/rebel-base-b"))
	// x-wing's egress is limited to cluster2's rebel-base.
	refused(t, b, w.Pod("cluster1/x-wing"), w.Pod("cluster1/rebel-base-a"))

	np := `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: rebel-base-from-cluster2-tie-fighter, namespace: default}
spec:
  podSelector:
    matchLabels: {name: rebel-base}
  ingress:
  - from:
    - namespaceSelector: {}
      podSelector:
        matchLabels: {name: tie-fighter, io.cilium.k8s.policy.cluster: cluster2}
`
	if err := b.Cluster("cluster1").Apply(ctx, np); err != nil {
		t.Fatal(err)
	}
	refused(t, b, w.Pod("cluster2/x-wing"), w.Pod("cluster1/rebel-base-b"))
	reach(t, b, w.Pod("cluster2/tie-fighter"), w.Pod("cluster1/rebel-base-b"))
	refused(t, b, w.Pod("cluster1/tie-fighter"), w.Pod("cluster1/rebel-base-b"))

	// Removing the policies opens the paths again.
	for _, d := range []struct{ cluster, kind, name string }{
		{"cluster1", "ClusterMeshNetworkPolicy", "allow-cross-cluster"}, {"cluster2", "ClusterMeshNetworkPolicy", "allow-cross-cluster"},
		{"cluster1", "NetworkPolicy", "rebel-base-from-cluster2-tie-fighter"},
	} {
		if err := b.Cluster(d.cluster).Delete(ctx, d.kind, "default", d.name); err != nil {
			t.Fatal(err)
		}
	}
	reach(t, b, w.Pod("cluster1/tie-fighter"), w.Pod("cluster2/rebel-base-a"))
	reach(t, b, w.Pod("cluster2/x-wing"), w.Pod("cluster1/rebel-base-b"))
	reach(t, b, w.Pod("cluster1/x-wing"), w.Pod("cluster1/rebel-base-a"))
}

// refused waits until connections from one pod to another fail, then
// checks that three more in a row fail too.
func refused(t *testing.T, b *bed.Bed, from, to *bed.Pod) {
	t.Helper()
	refusedAt(t, b, from, to, to.Addr())
}

// refusedAt is refused to one of the pod's addresses (ip:port).
func refusedAt(t *testing.T, b *bed.Bed, from, to *bed.Pod, addr string) {
	t.Helper()
	what := from.String() + " -> " + to.String()
	if addr != to.Addr() {
		what += " at " + addr
	}
	if err := b.WaitUntil(t.Context(), 30*time.Second, what+" refused", func(context.Context) (bool, string) {
		r := dial(t, from, addr, "ping")
		return r.Error != "", r.Reply
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if r := dial(t, from, addr, fmt.Sprint("again ", i)); r.Error == "" {
			t.Fatalf("%s: connected (%q) after it was refused", what, r.Reply)
		}
	}
	b.Logf("    %s: refused", what)
}
