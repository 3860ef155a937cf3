package policy

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/identity"
)

// traced is the verdict Trace gives a check (src's egress in its cluster,
// dst's ingress in its own); it fails the test when a trace's rules
// disagree with the computed datapath policy.
func (m mesh) traced(t *testing.T, c check) bool {
	t.Helper()
	var traces []Trace
	if c.dst != nil {
		eg, ok1 := m[c.src.cluster].Trace(TraceQuery{Endpoint: c.src.ns + "/" + c.src.name, Peer: c.dst.id, Proto: c.proto, Port: c.port})
		in, ok2 := m[c.dst.cluster].Trace(TraceQuery{Endpoint: c.dst.ns + "/" + c.dst.name, Peer: c.src.id, Ingress: true, Proto: c.proto, Port: c.port})
		if !ok1 || !ok2 {
			t.Fatalf("trace: unknown endpoint %s or %s", c.src.name, c.dst.name)
		}
		traces = []Trace{eg, in}
	} else {
		e := m[c.src.cluster]
		a := netip.MustParseAddr(c.addr)
		peer := e.addrCIDR(a)
		if peer == 0 {
			peer = identity.ReservedWorld
		}
		eg, _ := e.Trace(TraceQuery{Endpoint: c.src.ns + "/" + c.src.name, Peer: peer, Proto: c.proto, Port: c.port})
		traces = []Trace{eg}
	}
	allowed := true
	for _, tr := range traces {
		if tr.Inconsistent != "" {
			t.Errorf("trace %s %s: %s", tr.Endpoint, tr.Direction, tr.Inconsistent)
		}
		if tr.Reason == "" {
			t.Errorf("trace %s %s without a reason", tr.Endpoint, tr.Direction)
		}
		allowed = allowed && tr.Allowed
	}
	return allowed
}

func TestTraceProvenance(t *testing.T) {
	const tcp = ProtoTCP
	for _, tc := range []struct {
		name     string
		policies []policyDoc
		cluster  string
		q        TraceQuery
		want     Trace
	}{
		{name: "no policy: allowed by default", cluster: "cluster2",
			q: TraceQuery{Endpoint: "default/rebel-base-2", Peer: tie.id, Ingress: true, Proto: tcp, Port: 80},
			want: Trace{Endpoint: "default/rebel-base-2", Identity: base2.id, Direction: "ingress", Allowed: true,
				Reason: "no policy selects the endpoint for ingress: allowed by default"}},
		{name: "seed ingress: x-wing of cluster1 allowed, naming the rule", cluster: "cluster2",
			policies: []policyDoc{{"cluster2", seedIngress}},
			q:        TraceQuery{Endpoint: "default/rebel-base-2", Peer: xwing.id, Ingress: true, Proto: tcp, Port: 80},
			want: Trace{Endpoint: "default/rebel-base-2", Identity: base2.id, Direction: "ingress", Allowed: true, Enforced: true,
				IsolatedBy: []PolicyKey{"cmnp/default/allow-cross-cluster"},
				AllowedBy:  []RuleRef{{Policy: "cmnp/default/allow-cross-cluster", Rule: "spec.ingress[0]"}},
				Reason:     "allowed by cmnp/default/allow-cross-cluster spec.ingress[0]"}},
		{name: "seed ingress: tie-fighter isolated", cluster: "cluster2",
			policies: []policyDoc{{"cluster2", seedIngress}},
			q:        TraceQuery{Endpoint: "default/rebel-base-2", Peer: tie.id, Ingress: true, Proto: tcp, Port: 80},
			want: Trace{Endpoint: "default/rebel-base-2", Identity: base2.id, Direction: "ingress", Enforced: true,
				IsolatedBy: []PolicyKey{"cmnp/default/allow-cross-cluster"},
				Reason: "selected by cmnp/default/allow-cross-cluster for ingress and no rule allows: denied " +
					"(isolated by cmnp/default/allow-cross-cluster)"}},
		{name: "seed egress: x-wing to rebel-base of cluster1 isolated", cluster: "cluster1",
			policies: []policyDoc{{"cluster1", seedEgress}},
			q:        TraceQuery{Endpoint: "default/x-wing", Peer: baseLocal.id, Proto: tcp, Port: 80},
			want: Trace{Endpoint: "default/x-wing", Identity: xwing.id, Direction: "egress", Enforced: true,
				IsolatedBy: []PolicyKey{"cmnp/default/allow-cross-cluster"},
				Reason: "selected by cmnp/default/allow-cross-cluster for egress and no rule allows: denied " +
					"(isolated by cmnp/default/allow-cross-cluster)"}},
		{name: "deny wins, naming the deny rule", cluster: "cluster1",
			policies: []policyDoc{{"cluster1", ccnpDenyTie}},
			q:        TraceQuery{Endpoint: "default/rebel-base-1", Peer: tie.id, Ingress: true, Proto: tcp, Port: 80},
			want: Trace{Endpoint: "default/rebel-base-1", Identity: baseLocal.id, Direction: "ingress", Enforced: true,
				IsolatedBy: []PolicyKey{"ccmnp/deny-tie"},
				AllowedBy:  []RuleRef{{Policy: "ccmnp/deny-tie", Rule: "spec.ingress[0]"}},
				DeniedBy:   []RuleRef{{Policy: "ccmnp/deny-tie", Rule: "spec.ingressDeny[0]", Deny: true}},
				Reason:     "denied by ccmnp/deny-tie spec.ingressDeny[0] (a deny rule wins over any allow)"}},
		{name: "deny-only policy isolates nothing", cluster: "cluster1",
			policies: []policyDoc{{"cluster1", denyOnlyTie}},
			q:        TraceQuery{Endpoint: "default/rebel-base-1", Peer: xwing.id, Ingress: true, Proto: tcp, Port: 80},
			want: Trace{Endpoint: "default/rebel-base-1", Identity: baseLocal.id, Direction: "ingress", Allowed: true,
				DenyOnlyBy: []PolicyKey{"cmnp/default/deny-only"},
				Reason:     "only deny rules (of cmnp/default/deny-only) select the endpoint for ingress and none matches: allowed"}},
		{name: "NetworkPolicy: the port decides, two policies isolate", cluster: "cluster1",
			policies: []policyDoc{{"cluster1", dbFromDevClients}, {"cluster1", dbNamedPort}},
			q:        TraceQuery{Endpoint: "prod/db", Peer: client.id, Ingress: true, Proto: tcp, Port: 5432},
			want: Trace{Endpoint: "prod/db", Identity: db.id, Direction: "ingress", Allowed: true, Enforced: true,
				IsolatedBy: []PolicyKey{"k8s/prod/db", "k8s/prod/db-named"},
				AllowedBy:  []RuleRef{{Policy: "k8s/prod/db", Rule: "spec.ingress[0]"}, {Policy: "k8s/prod/db-named", Rule: "spec.ingress[0]"}},
				Reason:     "allowed by k8s/prod/db spec.ingress[0], k8s/prod/db-named spec.ingress[0]"}},
		{name: "NetworkPolicy: another port is denied by both", cluster: "cluster1",
			policies: []policyDoc{{"cluster1", dbFromDevClients}, {"cluster1", dbNamedPort}},
			q:        TraceQuery{Endpoint: "prod/db", Peer: client.id, Ingress: true, Proto: tcp, Port: 80},
			want: Trace{Endpoint: "prod/db", Identity: db.id, Direction: "ingress", Enforced: true,
				IsolatedBy: []PolicyKey{"k8s/prod/db", "k8s/prod/db-named"},
				Reason:     "selected by k8s/prod/db, k8s/prod/db-named for ingress and no rule allows: denied (isolated by k8s/prod/db, k8s/prod/db-named)"}},
		{name: "NetworkPolicy ipBlock selects a pod by address", cluster: "cluster1",
			policies: []policyDoc{{"cluster1", clientEgressRange}},
			q:        TraceQuery{Endpoint: "dev/client", Peer: base2.id, PeerAddr: netip.MustParseAddr("10.2.3.4"), Proto: ProtoUDP, Port: 53},
			want: Trace{Endpoint: "dev/client", Identity: client.id, Direction: "egress", Allowed: true, Enforced: true,
				IsolatedBy: []PolicyKey{"k8s/dev/client-egress"},
				AllowedBy:  []RuleRef{{Policy: "k8s/dev/client-egress", Rule: "spec.egress[1]"}},
				Reason:     "allowed by k8s/dev/client-egress spec.egress[1]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMesh(true)
			for _, p := range tc.policies {
				m.apply(t, p.cluster, p.yaml)
			}
			got, ok := m[tc.cluster].Trace(tc.q)
			if !ok {
				t.Fatalf("Trace(%+v): endpoint unknown", tc.q)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Trace(%+v) (-want +got):\n%s", tc.q, d)
			}
		})
	}
}

func TestTraceUnknownEndpoint(t *testing.T) {
	m := newMesh(true)
	if _, ok := m["cluster1"].Trace(TraceQuery{Endpoint: "default/nope", Ingress: true}); ok {
		t.Error("Trace of an unknown endpoint answered")
	}
	if _, ok := m["cluster1"].EndpointPolicies("default/nope"); ok {
		t.Error("EndpointPolicies of an unknown endpoint answered")
	}
}

func TestEndpointPolicies(t *testing.T) {
	m := newMesh(true)
	m.apply(t, "cluster1", ccnpDenyTie)
	m.apply(t, "cluster1", denyOnlyTie)
	got, _ := m["cluster1"].EndpointPolicies("default/rebel-base-1")
	want := []PolicySummary{
		{Policy: "ccmnp/deny-tie", Ingress: "enforced", Rules: []RuleRef{
			{Policy: "ccmnp/deny-tie", Rule: "spec.ingressDeny[0]", Deny: true}, {Policy: "ccmnp/deny-tie", Rule: "spec.ingress[0]"}}},
		{Policy: "cmnp/default/deny-only", Ingress: "deny-only", Rules: []RuleRef{{Policy: "cmnp/default/deny-only", Rule: "spec.ingressDeny[0]", Deny: true}}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("EndpointPolicies (-want +got):\n%s", d)
	}
	if got, _ := m["cluster1"].EndpointPolicies("default/x-wing"); len(got) != 0 {
		t.Errorf("x-wing: %v, want no policy", got)
	}
}
