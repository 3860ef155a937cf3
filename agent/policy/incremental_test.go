package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// randomPolicy returns a policy of namespace ns over a small label space,
// so that random sequences of changes select and unselect often.
func randomPolicy(r *rand.Rand, ns string, n int) *cmv1.ClusterMeshNetworkPolicy {
	apps := []string{"a", "b", "c"}
	sel := func() metav1.LabelSelector {
		s := metav1.LabelSelector{MatchLabels: map[string]string{"app": apps[r.IntN(len(apps))]}}
		if r.IntN(3) == 0 {
			s.MatchLabels[identity.ClusterLabelKey] = []string{"c1", "c2"}[r.IntN(2)]
		}
		return s
	}
	ports := func() []cmv1.PortRule {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1:
			return []cmv1.PortRule{{Ports: []cmv1.PortProtocol{{Port: "80", Protocol: "TCP"}}}}
		}
		return []cmv1.PortRule{{Ports: []cmv1.PortProtocol{{Port: "web"}, {Port: "1000", EndPort: 2000}}}}
	}
	rule := cmv1.PolicyRule{EndpointSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": apps[r.IntN(len(apps))]}}}
	in := cmv1.IngressRule{FromEndpoints: []metav1.LabelSelector{sel()}, ToPorts: ports()}
	if r.IntN(4) == 0 {
		in.FromEntities = []string{"cluster"}
	}
	if r.IntN(2) == 0 {
		rule.IngressDeny = []cmv1.IngressRule{in}
	} else {
		rule.Ingress = []cmv1.IngressRule{in}
	}
	eg := cmv1.EgressRule{ToEndpoints: []metav1.LabelSelector{sel()}, ToPorts: ports()}
	if r.IntN(3) == 0 {
		eg.ToCIDRSet = []cmv1.CIDRRule{{Cidr: "10.0.0.0/8", ExceptCIDRs: []string{fmt.Sprintf("10.%d.0.0/16", r.IntN(3))}}}
	}
	if r.IntN(2) == 0 {
		rule.Egress = []cmv1.EgressRule{eg}
	}
	return &cmv1.ClusterMeshNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", n), Namespace: ns}, Spec: &rule}
}

func randomIdentity(r *rand.Rand, id int) Identity {
	c := []string{"c1", "c2"}[r.IntN(2)]
	return Identity{ID: identity.NumericIdentity(id), Labels: identity.PodLabels(c, "ns", "default",
		map[string]string{"app": []string{"a", "b", "c", "d"}[r.IntN(4)]}, nil)}
}

// snapshot is every endpoint's result and the CIDR identities.
func snapshot(e *Engine) (map[string]any, map[netip.Prefix]identity.NumericIdentity) {
	out := map[string]any{}
	for _, k := range e.Endpoints() {
		p, _ := e.EndpointPolicy(k)
		out[k] = p
	}
	return out, e.CIDRIdentities()
}

// Random sequences of identity, endpoint and policy changes: the
// incremental result always equals a full recompute of the same inputs.
func TestIncrementalEqualsRecompute(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		inc := NewEngine(Config{Cluster: "c1", DefaultLocalCluster: seed%2 == 0})
		full := NewEngine(Config{Cluster: "c1", DefaultLocalCluster: seed%2 == 0})
		for step := range 300 {
			var op string
			switch k := r.IntN(10); {
			case k < 4:
				idt := randomIdentity(r, 65536+r.IntN(30))
				op = fmt.Sprintf("upsert identity %d", idt.ID)
				inc.UpsertIdentity(idt)
				full.UpsertIdentity(idt)
			case k < 5:
				id := identity.NumericIdentity(65536 + r.IntN(30))
				op = fmt.Sprintf("delete identity %d", id)
				inc.DeleteIdentity(id)
				full.DeleteIdentity(id)
			case k < 7:
				idt := randomIdentity(r, 65536+r.IntN(30))
				ep := Endpoint{Key: fmt.Sprintf("ns/pod%d", r.IntN(6)), Namespace: "ns", ID: idt.ID, Labels: idt.Labels,
					NamedPorts: []schema.NamedPort{{Name: "web", Port: uint16(8000 + r.IntN(3)), Protocol: "TCP"}}}
				op = "upsert endpoint " + ep.Key
				inc.UpsertEndpoint(ep)
				full.UpsertEndpoint(ep)
			case k < 9:
				p := randomPolicy(r, "ns", r.IntN(8))
				op = "upsert policy " + p.Name
				inc.UpsertPolicy(inc.CompileClusterMeshPolicy(p))
				full.UpsertPolicy(full.CompileClusterMeshPolicy(p))
			default:
				key := PolicyKey(fmt.Sprintf("cmnp/ns/p%d", r.IntN(8)))
				op = "delete policy " + string(key)
				inc.DeletePolicy(key)
				full.DeletePolicy(key)
			}
			full.Recompute()
			gotEP, gotCIDR := snapshot(inc)
			wantEP, wantCIDR := snapshot(full)
			if diff := cmp.Diff(wantEP, gotEP); diff != "" {
				t.Fatalf("seed %d step %d (%s): incremental differs from recompute (-recompute +incremental):\n%s", seed, step, op, diff)
			}
			if diff := cmp.Diff(wantCIDR, gotCIDR, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Fatalf("seed %d step %d (%s): CIDR identities differ:\n%s", seed, step, op, diff)
			}
		}
	}
}
