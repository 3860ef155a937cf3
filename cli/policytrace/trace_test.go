package policytrace_test

import (
	"bytes"
	"context"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/agent/policy"
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/agent/state"
	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/cli/agents"
	"github.com/clustermesh/clustermesh/cli/policytrace"
	"github.com/clustermesh/clustermesh/examples"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

type testPod struct {
	cluster, name, node string
	id                  identity.NumericIdentity
	ip                  string
	app                 string
}

// The story: x-wing and tie-fighter on cluster1's node, rebel-base-a on
// cluster2's.
var testPods = []testPod{
	{"cluster1", "x-wing", "c1-n1", 65537, "10.1.0.10", "x-wing"},
	{"cluster1", "tie-fighter", "c1-n1", 65538, "10.1.0.11", "tie-fighter"},
	{"cluster2", "rebel-base-a", "c2-n1", 131073, "10.2.0.10", "rebel-base"},
}

func (p testPod) labels() identity.Labels {
	return identity.PodLabels(p.cluster, "default", "default", map[string]string{"name": p.app}, nil)
}

// startAgent serves the real local API of an agent of cluster on node: its
// state holds every pod of the mesh (identities, ipcache) and its own
// endpoints; its policy engine has the cluster's document of
// examples/cross-cluster-policy.yaml.
func startAgent(t *testing.T, cluster, node, policyDoc string) string {
	t.Helper()
	st, err := state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	e := policy.NewEngine(policy.Config{Cluster: cluster, DefaultLocalCluster: true})
	if err := st.Update(func(w *state.WriteTxn) error {
		for _, p := range testPods {
			if err := w.UpsertIdentity(p.cluster, p.id, p.labels()); err != nil {
				return err
			}
			e.UpsertIdentity(policy.Identity{ID: p.id, Labels: p.labels()})
			if err := w.UpsertIP(state.IPCacheRow{Prefix: netip.PrefixFrom(netip.MustParseAddr(p.ip), 32), Cluster: p.cluster, ID: p.id,
				Namespace: "default", Pod: p.name}); err != nil {
				return err
			}
			if p.node == node {
				ep := state.Endpoint{Namespace: "default", Name: p.name, IPs: []netip.Addr{netip.MustParseAddr(p.ip)}, ID: p.id, Labels: p.labels()}
				if err := w.UpsertEndpoint(ep); err != nil {
					return err
				}
				e.UpsertEndpoint(policy.Endpoint{Key: "default/" + p.name, Namespace: "default", ID: p.id, Labels: p.labels()})
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if policyDoc != "" {
		var p cmv1.ClusterMeshNetworkPolicy
		if err := yaml.UnmarshalStrict([]byte(policyDoc), &p); err != nil {
			t.Fatal(err)
		}
		e.UpsertPolicy(e.CompileClusterMeshPolicy(&p))
	}
	var mu sync.Mutex // the engine's owner in this test
	api := localapi.New(localapi.Config{Cluster: cluster, Node: node, State: st, Metrics: prometheus.NewRegistry(),
		Peers: func() []remote.Status { return nil }, Reconcilers: func() []reconciler.Status { return nil }, Ready: func() bool { return true },
		Policy: func(_ context.Context, fn func(*policy.Engine)) error {
			mu.Lock()
			defer mu.Unlock()
			fn(e)
			return nil
		},
	})
	dir, err := os.MkdirTemp("", "cm-trace")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	socket := filepath.Join(dir, "agent.sock")
	mux := http.NewServeMux()
	api.Register(mux)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- localapi.Serve(ctx, socket, mux) }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(t, 5*time.Second, "the agent's socket", func() bool { _, err := os.Stat(socket); return err == nil })
	return socket
}

func crossClusterDocs(t *testing.T) []string {
	t.Helper()
	raw, err := fs.ReadFile(examples.Manifests, "cross-cluster-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(raw), "\n---\n")
}

func TestTraceAcrossClusters(t *testing.T) {
	docs := crossClusterDocs(t)
	c1 := startAgent(t, "cluster1", "c1-n1", docs[0])
	c2 := startAgent(t, "cluster2", "c2-n1", docs[1])
	both, _ := agents.Sockets{"c1-n1": c1, "c2-n1": c2}.Agents(t.Context())
	only2, _ := agents.Sockets{"c2-n1": c2}.Agents(t.Context())
	const pol = "cmnp/default/allow-cross-cluster"

	for _, tc := range []struct {
		name         string
		src          []agents.Agent
		q            policytrace.Query
		verdict      string
		egress       string // the reason, "" for not evaluated
		ingress      string
		notes        []string
		fromID, toID uint32
	}{
		{name: "x-wing to rebel-base: allowed by both sides, naming the rules", src: both,
			q:       policytrace.Query{From: "cluster1/default/x-wing", To: "cluster2/default/rebel-base-a", Port: 80, Protocol: "TCP"},
			verdict: policytrace.Allowed, egress: "allowed by " + pol + " spec.egress[0]", ingress: "allowed by " + pol + " spec.ingress[0]",
			fromID: 65537, toID: 131073},
		{name: "tie-fighter to rebel-base: its egress is open, rebel-base isolated", src: both,
			q:       policytrace.Query{From: "cluster1/default/tie-fighter", To: "cluster2/default/rebel-base-a", Port: 80, Protocol: "TCP"},
			verdict: policytrace.Denied, egress: "no policy selects the endpoint for egress: allowed by default",
			ingress: "selected by " + pol + " for ingress and no rule allows: denied (isolated by " + pol + ")",
			fromID:  65538, toID: 131073},
		{name: "only the destination's cluster asked: the source resolved from its ipcache", src: only2,
			q:       policytrace.Query{From: "cluster1/default/x-wing", To: "default/rebel-base-a", Port: 80, Protocol: "TCP"},
			verdict: policytrace.Unknown, ingress: "allowed by " + pol + " spec.ingress[0]",
			notes:  []string{"egress not evaluated: no agent of cluster cluster1 was asked (pass its kubeconfig context with --from-context)"},
			fromID: 65537, toID: 131073},
		{name: "tie-fighter denied even when only the destination is asked", src: only2,
			q:       policytrace.Query{From: "cluster1/default/tie-fighter", To: "default/rebel-base-a", Port: 80, Protocol: "TCP"},
			verdict: policytrace.Denied, ingress: "selected by " + pol + " for ingress and no rule allows: denied (isolated by " + pol + ")",
			notes:  []string{"egress not evaluated: no agent of cluster cluster1 was asked (pass its kubeconfig context with --from-context)"},
			fromID: 65538, toID: 131073},
		{name: "x-wing to a pod of its own cluster: its egress isolated", src: both,
			q:       policytrace.Query{From: "cluster1/default/x-wing", To: "cluster1/default/tie-fighter", Port: 80, Protocol: "TCP"},
			verdict: policytrace.Denied, egress: "selected by " + pol + " for egress and no rule allows: denied (isolated by " + pol + ")",
			ingress: "no policy selects the endpoint for ingress: allowed by default", fromID: 65537, toID: 65538},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := policytrace.Trace(t.Context(), tc.src, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			reason := func(s *policytrace.Side) string {
				if s == nil {
					return ""
				}
				if s.Trace.Inconsistent != "" {
					t.Errorf("inconsistent: %s", s.Trace.Inconsistent)
				}
				return s.Trace.Reason
			}
			got := []any{res.Verdict, reason(res.Egress), reason(res.Ingress), res.Notes, res.From.Identity, res.To.Identity}
			want := []any{tc.verdict, tc.egress, tc.ingress, tc.notes, tc.fromID, tc.toID}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("verdict, egress, ingress, notes, identities (-want +got):\n%s", d)
			}
			var out bytes.Buffer
			if err := policytrace.WriteTable(&out, res); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "VERDICT  "+strings.ToUpper(tc.verdict)) {
				t.Errorf("table without the verdict:\n%s", out.String())
			}
		})
	}

	// Bad input: each named, never a panic.
	for _, tc := range []struct {
		q    policytrace.Query
		want string
	}{
		{policytrace.Query{From: "x-wing", To: "cluster2/default/rebel-base-a", Port: 80, Protocol: "TCP"}, "--from: pod \"x-wing\": write it as"},
		{policytrace.Query{From: "default/x-wing", To: "default/rebel-base-a", Port: 80, Protocol: "TCP"},
			"--from default/x-wing: the agents asked are of clusters cluster1, cluster2; write the pod as <cluster>/<namespace>/<pod>"},
		{policytrace.Query{From: "cluster1/default/nope", To: "cluster2/default/nada", Port: 80, Protocol: "TCP"}, "neither cluster1/default/nope nor cluster2/default/nada is known"},
	} {
		if _, err := policytrace.Trace(t.Context(), both, tc.q); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Trace(%+v): %v, want %q", tc.q, err, tc.want)
		}
	}
	for _, s := range []string{"0", "80/ICMP", "http", "70000/TCP"} {
		if _, _, err := policytrace.ParsePort(s); err == nil || !strings.Contains(err.Error(), "--port") {
			t.Errorf("ParsePort(%q): %v, want an error naming --port", s, err)
		}
	}
	if p, proto, err := policytrace.ParsePort("53/udp"); err != nil || p != 53 || proto != "UDP" {
		t.Errorf("ParsePort(53/udp) = %d %s %v", p, proto, err)
	}
}

func TestGet(t *testing.T) {
	docs := crossClusterDocs(t)
	c2 := startAgent(t, "cluster2", "c2-n1", docs[1])
	src, _ := agents.Sockets{"c2-n1": c2}.Agents(t.Context())
	res, err := policytrace.Get(t.Context(), src, "default/rebel-base-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Endpoints) != 1 {
		t.Fatalf("endpoints %+v, want rebel-base-a", res.Endpoints)
	}
	e := res.Endpoints[0]
	want := []policy.PolicySummary{{Policy: "cmnp/default/allow-cross-cluster", Ingress: "enforced",
		Rules: []policy.RuleRef{{Policy: "cmnp/default/allow-cross-cluster", Rule: "spec.ingress[0]"}}}}
	if d := cmp.Diff(want, e.Policies); d != "" || !e.EnforceIngress || e.EnforceEgress || e.Cluster != "cluster2" || e.Node != "c2-n1" {
		t.Errorf("rebel-base-a: %+v (-want +got policies):\n%s", e, d)
	}
	if _, err := policytrace.Get(t.Context(), src, "default/nope"); err == nil || !strings.Contains(err.Error(), "not an endpoint of any agent") {
		t.Errorf("an unknown pod: %v", err)
	}
	if _, err := policytrace.Get(t.Context(), src, "cluster2/default/rebel-base-a"); err == nil || !strings.Contains(err.Error(), "<namespace>/<pod>") {
		t.Errorf("a pod with a cluster: %v", err)
	}
}
