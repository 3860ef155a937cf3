//go:build linux

package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/agent/flowapi"
	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/starwars"
)

// Scenario: which backend, in which cluster, did a connection to a global
// Service get? The global Service rebel-remote (rebel-base's pods) has
// affinity remote in cluster1, so x-wing of cluster1 connecting to its
// ClusterIP is served by a rebel-base pod of cluster2. `clustermesh
// observe --service default/rebel-remote` on cluster1 (the binary, every
// node's agent) shows that connection's flow at x-wing's egress with the
// Service, the frontend x-wing addressed (the ClusterIP), and the backend
// the socket load balancer chose, which is the pod that answered, and its
// cluster, in JSON and in the compact line. The backend's node in cluster2
// sees the connection after routing, without its socket: no Service there.
// With tie-fighter's egress isolated by a policy, its connections to the
// same ClusterIP are dropped at its egress, and `observe --service ...
// --verdict dropped` shows the drop with the backend it was headed for.
func testObserveService(t *testing.T, w *starwars.World) {
	ctx, b := t.Context(), w.Bed
	c1, c2 := b.Cluster("cluster1"), b.Cluster("cluster2")
	const name = "rebel-remote"
	sel := map[string]string{"name": "rebel-base"}
	svc, err := c1.CreateService(ctx, starwars.Namespace, name, sel,
		map[string]string{"service.cilium.io/global": "true", "service.cilium.io/affinity": "remote"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.CreateService(ctx, starwars.Namespace, name, sel, map[string]string{"service.cilium.io/global": "true"}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range []*bed.Cluster{c1, c2} {
			if err := c.Delete(context.WithoutCancel(ctx), "Service", starwars.Namespace, name); err != nil {
				t.Error(err)
			}
		}
	}()
	xwing := w.Pod("cluster1/x-wing")
	if _, err := w.WaitTally(ctx, xwing, svc, 5, 60*time.Second, "affinity remote: rebel-remote served by cluster2 only",
		func(t starwars.Tally) bool { return t.Only("cluster2") }); err != nil {
		t.Fatal(err)
	}
	backends := map[string]*bed.Pod{}
	for _, n := range []string{"rebel-base-a", "rebel-base-b"} {
		p := w.Pod("cluster2/" + n)
		backends[p.String()] = p
	}

	// One connection: who answered, and from which source port.
	r := dial(t, xwing, svc, "which backend?")
	if r.Error != "" {
		t.Fatalf("x-wing -> %s: %s", svc, r.Error)
	}
	who, _, _ := strings.Cut(r.Reply, " ")
	backend, ok := backends[who]
	if !ok {
		t.Fatalf("x-wing -> %s answered by %q, want a rebel-base pod of cluster2", svc, r.Reply)
	}
	local, err := netip.ParseAddrPort(r.Local)
	if err != nil {
		t.Fatalf("x-wing's local address %q: %v", r.Local, err)
	}
	if r.Remote != svc {
		t.Errorf("x-wing's peer address %s, want the frontend %s (getpeername through the reverse translation)", r.Remote, svc)
	}
	b.Logf("    x-wing %s -> %s answered by %s", local, svc, backend)

	observe := func(c *bed.Cluster, args ...string) string {
		t.Helper()
		out, err := b.CLI(ctx, append(append([]string{"observe", "--context", c.Name}, c.AgentSocketArgs()...), args...)...)
		if err != nil {
			t.Fatalf("observe: %v: %s", err, out)
		}
		return out
	}
	isOurs := func(f *flowapi.Flow) bool {
		return f.Src.IP == local.Addr() && f.Src.Port == local.Port() && f.TCPFlags == flowapi.SYN && !f.IsReply
	}
	var f *flowapi.Flow
	if err := b.WaitUntil(ctx, 20*time.Second, "x-wing's connection in observe --service", func(context.Context) (bool, string) {
		out := observe(c1, "--service", starwars.Namespace+"/"+name, "--from-pod", "default/x-wing", "--last", "50", "-o", "json")
		for _, fl := range jsonFlows(t, out) {
			if isOurs(fl) {
				f = fl
				return true, ""
			}
		}
		return false, out
	}); err != nil {
		t.Fatal(err)
	}
	wantBackend := netip.AddrPortFrom(backend.IP, bed.WorkloadPort)
	want := flowapi.ServiceTranslation{Namespace: starwars.Namespace, Name: name, Frontend: netip.MustParseAddrPort(svc),
		Backend: wantBackend, BackendCluster: "cluster2"}
	if f.Service == nil || *f.Service != want {
		t.Errorf("the flow's service: %+v, want %+v", f.Service, want)
	}
	if f.Direction != flowapi.DirectionEgress || f.Verdict != flowapi.VerdictForwarded || f.Node != xwing.Node.Name ||
		f.Dst.IP != backend.IP || f.Dst.Port != bed.WorkloadPort || f.Dst.Cluster != "cluster2" || f.Dst.Pod != backend.Name ||
		f.Src.Pod != "x-wing" || f.Src.Cluster != "cluster1" {
		t.Errorf("the flow: %+v, want x-wing's forwarded egress SYN on %s to %s (%s)", f, xwing.Node.Name, backend, wantBackend)
	}

	// The compact line a user reads.
	out := observe(c1, "--service", starwars.Namespace+"/"+name, "--from-pod", "default/x-wing", "--last", "50")
	line := fmt.Sprintf("%s:%d -> %s:%d (service %s/%s %s) TCP SYN FORWARDED", xwing, local.Port(), backend, bed.WorkloadPort, starwars.Namespace, name, svc)
	if !strings.Contains(out, line) {
		t.Errorf("observe --service (compact):\n%s\nwant a line with %q", out, line)
	}
	b.Logf("    %s", line)

	// Another Service's filter does not select it.
	other := observe(c1, "--service", starwars.Namespace+"/rebel-base", "--from-pod", "default/x-wing", "--last", "50", "-o", "json")
	for _, fl := range jsonFlows(t, other) {
		if isOurs(fl) {
			t.Errorf("observe --service default/rebel-base shows the connection to rebel-remote: %+v", fl)
		}
	}

	observeDropThroughService(t, w, observe, name, svc, backends)

	// The backend's side: the same connection at its ingress, no Service.
	if err := b.WaitUntil(ctx, 20*time.Second, "x-wing's connection at "+backend.String()+"'s ingress", func(context.Context) (bool, string) {
		out := observe(c2, "--from-cluster", "cluster1", "--from-pod", "default/x-wing", "--to-pod", "default/"+backend.Name, "--last", "50", "-o", "json")
		for _, fl := range jsonFlows(t, out) {
			if isOurs(fl) && fl.Direction == flowapi.DirectionIngress {
				if fl.Service != nil {
					t.Errorf("the backend's ingress flow has a service: %+v", fl.Service)
				}
				return true, ""
			}
		}
		return false, out
	}); err != nil {
		t.Fatal(err)
	}
}

// tieFighterEgress isolates tie-fighter's egress in cluster1: it may reach
// x-wing only.
const tieFighterEgress = `apiVersion: clustermesh.io/v1alpha1
kind: ClusterMeshNetworkPolicy
metadata:
  name: tie-fighter-egress
  namespace: default
spec:
  endpointSelector:
    matchLabels:
      name: tie-fighter
  egress:
    - toEndpoints:
        - matchLabels:
            name: x-wing
`

// observeDropThroughService makes tie-fighter's connections to the Service
// name (ClusterIP svc) be dropped by its egress policy, and finds one of
// those drops in observe --service name --verdict dropped, with the
// frontend and the backend it was translated to.
func observeDropThroughService(t *testing.T, w *starwars.World, observe func(*bed.Cluster, ...string) string, name, svc string, backends map[string]*bed.Pod) {
	t.Helper()
	ctx, b := t.Context(), w.Bed
	c1 := b.Cluster("cluster1")
	if err := c1.Apply(ctx, tieFighterEgress); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c1.Delete(context.WithoutCancel(ctx), "ClusterMeshNetworkPolicy", starwars.Namespace, "tie-fighter-egress"); err != nil {
			t.Error(err)
		}
	}()
	tie := w.Pod("cluster1/tie-fighter")
	byIP := map[netip.Addr]*bed.Pod{}
	for _, p := range backends {
		byIP[p.IP] = p
	}
	start := time.Now()
	var drop *flowapi.Flow
	if err := b.WaitUntil(ctx, 30*time.Second, "tie-fighter's connection to "+svc+" dropped, in observe --service --verdict dropped", func(context.Context) (bool, string) {
		r := dial(t, tie, svc, "dropped?")
		if r.Error == "" { // the policy is not in place yet
			return false, "connected: " + r.Reply
		}
		out := observe(c1, "--service", starwars.Namespace+"/"+name, "--verdict", "dropped", "--from-pod", "default/tie-fighter", "--last", "20", "-o", "json")
		for _, f := range jsonFlows(t, out) {
			if !f.Time.Before(start) && f.Src.IP == tie.IP {
				drop = f
				return true, ""
			}
		}
		return false, out
	}); err != nil {
		t.Fatal(err)
	}
	backend, ok := byIP[drop.Dst.IP]
	if !ok {
		t.Fatalf("the drop's destination %v is not a rebel-base pod of cluster2: %+v", drop.Dst.IP, drop)
	}
	want := flowapi.ServiceTranslation{Namespace: starwars.Namespace, Name: name, Frontend: netip.MustParseAddrPort(svc),
		Backend: netip.AddrPortFrom(backend.IP, bed.WorkloadPort), BackendCluster: "cluster2"}
	if drop.Service == nil || *drop.Service != want {
		t.Errorf("the drop's service: %+v, want %+v", drop.Service, want)
	}
	if drop.Direction != flowapi.DirectionEgress || drop.Reason != "policy-denied" || drop.Node != tie.Node.Name || drop.Dst.Pod != backend.Name {
		t.Errorf("the drop: %+v, want tie-fighter's egress on %s, policy-denied, to %s", drop, tie.Node.Name, backend)
	}
	b.Logf("    %s", observe(c1, "--service", starwars.Namespace+"/"+name, "--verdict", "dropped", "--from-pod", "default/tie-fighter", "--last", "1"))
}

// jsonFlows decodes the flows of `observe -o json`'s output; lines starting
// with '#' (events the agents lost, on stderr) are skipped.
func jsonFlows(t *testing.T, out string) []*flowapi.Flow {
	t.Helper()
	var fs []*flowapi.Flow
	for line := range strings.SplitSeq(out, "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var f flowapi.Flow
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("observe -o json: line %q: %v", line, err)
		}
		fs = append(fs, &f)
	}
	return fs
}
