//go:build linux

package scenarios

import (
	"context"
	"encoding/json"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/agent/policy"
	"github.com/clustermesh/clustermesh/cli/inventory"
	"github.com/clustermesh/clustermesh/cli/policytrace"
	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/starwars"
	"github.com/clustermesh/clustermesh/examples"
)

// testPolicyTrace (a step of TestMesh, after Observe): with Cilium's
// cross-cluster policy example applied, `clustermesh policy trace` answers
// from the agents of both clusters that x-wing of cluster1 may reach
// rebel-base-a of cluster2 (naming the policy and its rules on both sides)
// and that tie-fighter may not (rebel-base-a isolated by the policy), and
// real connections on the bed agree: the first succeeds, the second is
// refused. policy get, service list, endpoint list and identity list are
// read from the same agents.
func testPolicyTrace(t *testing.T, w *starwars.World) {
	b := w.Bed
	ctx := t.Context()
	raw, err := fs.ReadFile(examples.Manifests, "cross-cluster-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(raw), "\n---\n")
	for i, c := range []string{"cluster1", "cluster2"} {
		if err := b.Cluster(c).Apply(ctx, docs[i]); err != nil {
			t.Fatal(err)
		}
	}
	base := w.Pod("cluster2/rebel-base-a")
	// The datapath first: once the policy is enforced, the connections
	// show what the trace must say.
	refused(t, b, w.Pod("cluster1/tie-fighter"), base)
	reach(t, b, w.Pod("cluster1/x-wing"), base)

	var sockets []string
	for _, c := range []string{"cluster1", "cluster2"} {
		for _, n := range b.Cluster(c).Nodes {
			sockets = append(sockets, "--agent-socket", n.Name+"="+n.Socket)
		}
	}
	trace := func(t *testing.T, from string, output string) (string, policytrace.Result) {
		t.Helper()
		args := append([]string{"policy", "trace", "--from", from, "--to", "cluster2/default/rebel-base-a", "--port", "80/TCP", "-o", output}, sockets...)
		out, err := b.CLI(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		var res policytrace.Result
		if output == "json" {
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("policy trace -o json: %v\n%s", err, out)
			}
		}
		return out, res
	}
	const pol = "cmnp/default/allow-cross-cluster"
	nodeOf := func(p *bed.Pod) string { return p.Node.Name }

	t.Run("x-wing allowed", func(t *testing.T) {
		_, res := trace(t, "cluster1/default/x-wing", "json")
		xwing := w.Pod("cluster1/x-wing")
		if res.Verdict != policytrace.Allowed || res.Egress == nil || res.Ingress == nil {
			t.Fatalf("verdict %q, egress %v, ingress %v; want allowed by both sides", res.Verdict, res.Egress, res.Ingress)
		}
		if got, want := res.Egress.Trace.Reason, "allowed by "+pol+" spec.egress[0]"; got != want || res.Egress.Node != nodeOf(xwing) {
			t.Errorf("egress by %s: %q, want by %s: %q", res.Egress.Node, got, nodeOf(xwing), want)
		}
		if got, want := res.Ingress.Trace.Reason, "allowed by "+pol+" spec.ingress[0]"; got != want || res.Ingress.Node != nodeOf(base) {
			t.Errorf("ingress by %s: %q, want by %s: %q", res.Ingress.Node, got, nodeOf(base), want)
		}
		checkIdentities(t, res, xwing, base)
		// The table a user reads (logged by the bed).
		out, _ := trace(t, "cluster1/default/x-wing", "table")
		if !strings.Contains(out, "VERDICT  ALLOWED") || !strings.Contains(out, pol) {
			t.Errorf("table:\n%s", out)
		}
	})
	t.Run("tie-fighter denied", func(t *testing.T) {
		_, res := trace(t, "cluster1/default/tie-fighter", "json")
		tie := w.Pod("cluster1/tie-fighter")
		if res.Verdict != policytrace.Denied || res.Ingress == nil || res.Ingress.Trace.Allowed {
			t.Fatalf("verdict %q, ingress %v; want denied on ingress", res.Verdict, res.Ingress)
		}
		if !slices.Equal(res.Ingress.Trace.IsolatedBy, []policy.PolicyKey{pol}) || len(res.Ingress.Trace.AllowedBy) != 0 {
			t.Errorf("ingress: isolated by %v, allowed by %v; want isolated by %s only", res.Ingress.Trace.IsolatedBy, res.Ingress.Trace.AllowedBy, pol)
		}
		if want := "selected by " + pol + " for ingress and no rule allows: denied (isolated by " + pol + ")"; res.Ingress.Trace.Reason != want {
			t.Errorf("ingress reason %q, want %q", res.Ingress.Trace.Reason, want)
		}
		if res.Egress == nil || !res.Egress.Trace.Allowed || res.Egress.Node != nodeOf(tie) {
			t.Errorf("egress %v: want allowed by default by the agent of %s", res.Egress, nodeOf(tie))
		}
		checkIdentities(t, res, tie, base)
		out, _ := trace(t, "cluster1/default/tie-fighter", "table")
		if !strings.Contains(out, "VERDICT  DENIED") {
			t.Errorf("table:\n%s", out)
		}
	})
	t.Run("policy get", func(t *testing.T) {
		args := []string{"policy", "get", "default/rebel-base-a", "-o", "json"}
		for _, n := range b.Cluster("cluster2").Nodes {
			args = append(args, "--agent-socket", n.Name+"="+n.Socket)
		}
		out, err := b.CLI(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		var res policytrace.GetResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatal(err)
		}
		if len(res.Endpoints) != 1 || !res.Endpoints[0].EnforceIngress || len(res.Endpoints[0].Policies) != 1 ||
			res.Endpoints[0].Policies[0].Policy != pol || res.Endpoints[0].Node != nodeOf(base) {
			t.Errorf("policy get default/rebel-base-a: %s", out)
		}
	})
	t.Run("inventory", func(t *testing.T) {
		var c1 []string
		for _, n := range b.Cluster("cluster1").Nodes {
			c1 = append(c1, "--agent-socket", n.Name+"="+n.Socket)
		}
		list := func(t *testing.T, into any, args ...string) {
			t.Helper()
			if _, err := b.CLI(ctx, append(args, c1...)...); err != nil { // the table, logged
				t.Fatal(err)
			}
			out, err := b.CLI(ctx, append(append(args, "-o", "json"), c1...)...)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(out), into); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
		}
		// Affinity local (examples/global-service.yaml; GlobalService
		// left it at none): cluster1's own ready backends are used,
		// cluster2's are candidates left out.
		if err := b.Cluster("cluster1").Annotate(ctx, starwars.Namespace, "rebel-base", map[string]string{"service.cilium.io/affinity": "local"}); err != nil {
			t.Fatal(err)
		}
		var svcs inventory.Services
		if err := b.WaitUntil(ctx, 30*time.Second, "service list: rebel-base with affinity local", func(context.Context) (bool, string) {
			svcs = inventory.Services{}
			out, err := b.CLI(ctx, append([]string{"service", "list", "-o", "json"}, c1...)...)
			if err != nil {
				return false, err.Error()
			}
			if err := json.Unmarshal([]byte(out), &svcs); err != nil {
				return false, err.Error()
			}
			for _, s := range svcs.Services {
				if s.Namespace+"/"+s.Name == "default/rebel-base" {
					return s.Affinity == "local", "affinity " + s.Affinity
				}
			}
			return false, "no default/rebel-base"
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.CLI(ctx, append([]string{"service", "list"}, c1...)...); err != nil { // the table, logged
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, s := range svcs.Services {
			if s.Namespace+"/"+s.Name != "default/rebel-base" || s.Affinity != "local" {
				continue
			}
			for _, be := range s.Backends {
				used[be.Cluster+"/"+be.Address] = be.Selected
				if be.Cluster == "cluster2" && (be.Selected || be.Why != "affinity local: local backends of its family are ready") {
					t.Errorf("cluster2's backend %s: selected %v (%s), want left out by affinity", be.Address, be.Selected, be.Why)
				}
			}
		}
		for _, p := range []string{"cluster1/rebel-base-a", "cluster1/rebel-base-b", "cluster2/rebel-base-a", "cluster2/rebel-base-b"} {
			c, _, _ := strings.Cut(p, "/")
			sel, ok := used[c+"/"+w.Pod(p).IP.String()]
			if !ok || sel != (c == "cluster1") {
				t.Errorf("service list: backend %s (%s) listed %v, selected %v; want listed, selected only in cluster1 (%+v)", p, w.Pod(p).IP, ok, sel, svcs)
			}
		}
		// Later steps expect affinity none.
		if err := b.Cluster("cluster1").Annotate(ctx, starwars.Namespace, "rebel-base", map[string]string{"service.cilium.io/affinity": "none"}); err != nil {
			t.Fatal(err)
		}
		var eps inventory.Endpoints
		list(t, &eps, "endpoint", "list")
		found := false
		for _, e := range eps.Endpoints {
			if e.Namespace == "default" && e.Name == "x-wing" {
				found = true
				if !e.PolicyComputed || !e.EnforceEgress || e.EnforceIngress || e.Node != w.Pod("cluster1/x-wing").Node.Name {
					t.Errorf("endpoint list: x-wing %+v, want egress enforced on its node", e)
				}
			}
		}
		if !found {
			t.Errorf("endpoint list: no x-wing in %+v", eps.Endpoints)
		}
		var ids inventory.Identities
		list(t, &ids, "identity", "list", "--cluster", "cluster2")
		baseID, err := w.Pod("cluster1/x-wing").Node.Identity(ctx, base.IP.String())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(ids.Identities, func(id localapi.IdentityEntry) bool {
			return id.ID == baseID && id.Cluster == "cluster2" && strings.Contains(id.Labels, "k8s:name=rebel-base")
		}) {
			t.Errorf("identity list --cluster cluster2: no %d (rebel-base of cluster2) in %+v", baseID, ids.Identities)
		}
	})
	// The verdict agrees with the datapath still (nothing changed since).
	refused(t, b, w.Pod("cluster1/tie-fighter"), base)
	reach(t, b, w.Pod("cluster1/x-wing"), base)

	// The next steps expect no policy.
	for _, c := range []string{"cluster1", "cluster2"} {
		if err := b.Cluster(c).Delete(ctx, "ClusterMeshNetworkPolicy", starwars.Namespace, "allow-cross-cluster"); err != nil {
			t.Fatal(err)
		}
	}
	reach(t, b, w.Pod("cluster1/tie-fighter"), base)
}

// checkIdentities: the trace's identities are those the agents give the
// pods' addresses.
func checkIdentities(t *testing.T, res policytrace.Result, from, to *bed.Pod) {
	t.Helper()
	fromID, err := to.Node.Identity(t.Context(), from.IP.String())
	if err != nil {
		t.Fatal(err)
	}
	toID, err := to.Node.Identity(t.Context(), to.IP.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.From.Identity != fromID || res.To.Identity != toID {
		t.Errorf("identities %d -> %d, want %d -> %d", res.From.Identity, res.To.Identity, fromID, toID)
	}
}
