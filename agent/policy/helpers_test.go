package policy

import (
	"net/netip"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// pod is a test endpoint in some cluster.
type pod struct {
	cluster, ns, name string
	id                identity.NumericIdentity
	labels            map[string]string
	nsLabels          map[string]string
	named             []schema.NamedPort
}

func (p pod) identity() Identity {
	nsl := map[string]string{"kubernetes.io/metadata.name": p.ns}
	for k, v := range p.nsLabels {
		nsl[k] = v
	}
	return Identity{ID: p.id, Labels: identity.PodLabels(p.cluster, p.ns, "default", p.labels, nsl)}
}

func (p pod) endpoint() Endpoint {
	idt := p.identity()
	return Endpoint{Key: p.ns + "/" + p.name, Namespace: p.ns, ID: p.id, Labels: idt.Labels, NamedPorts: p.named}
}

// The mesh of the tests: two clusters.
var (
	xwing     = pod{cluster: "cluster1", ns: "default", name: "x-wing", id: 65537, labels: map[string]string{"name": "x-wing"}}
	tie       = pod{cluster: "cluster1", ns: "default", name: "tie-fighter", id: 65538, labels: map[string]string{"name": "tie-fighter"}}
	baseLocal = pod{cluster: "cluster1", ns: "default", name: "rebel-base-1", id: 65539, labels: map[string]string{"name": "rebel-base"}}
	db        = pod{cluster: "cluster1", ns: "prod", name: "db", id: 65540, labels: map[string]string{"app": "db"},
		nsLabels: map[string]string{"team": "prod"}, named: []schema.NamedPort{{Name: "postgres", Port: 5432, Protocol: "TCP"}}}
	client = pod{cluster: "cluster1", ns: "dev", name: "client", id: 65541, labels: map[string]string{"app": "client"}, nsLabels: map[string]string{"team": "dev"}}
	other  = pod{cluster: "cluster1", ns: "dev", name: "other", id: 65542, labels: map[string]string{"app": "other"}, nsLabels: map[string]string{"team": "dev"}}
	base2  = pod{cluster: "cluster2", ns: "default", name: "rebel-base-2", id: 131073, labels: map[string]string{"name": "rebel-base"}}
	xwing2 = pod{cluster: "cluster2", ns: "default", name: "x-wing-2", id: 131074, labels: map[string]string{"name": "x-wing"}}
	pods   = []pod{xwing, tie, baseLocal, db, client, other, base2, xwing2}
)

// mesh is one engine per cluster, each knowing every identity of the mesh
// and its own cluster's endpoints.
type mesh map[string]*Engine

func newMesh(defaultLocal bool) mesh {
	m := mesh{}
	for _, c := range []string{"cluster1", "cluster2"} {
		e := NewEngine(Config{Cluster: c, DefaultLocalCluster: defaultLocal})
		for _, p := range pods {
			e.UpsertIdentity(p.identity())
			if p.cluster == c {
				e.UpsertEndpoint(p.endpoint())
			}
		}
		e.SetNamedPorts(map[string][]schema.NamedPort{"postgres": db.named})
		m[c] = e
	}
	return m
}

// allowed is the verdict for a new flow from src to dst: src's egress
// policy (in its cluster) and dst's ingress policy (in its own).
func (m mesh) allowed(t *testing.T, src, dst pod, proto uint8, port uint16) bool {
	t.Helper()
	sp, ok1 := m[src.cluster].EndpointPolicy(src.ns + "/" + src.name)
	dp, ok2 := m[dst.cluster].EndpointPolicy(dst.ns + "/" + dst.name)
	if !ok1 || !ok2 {
		t.Fatalf("unknown endpoint %s or %s", src.name, dst.name)
	}
	return sp.Allows(dst.id, false, proto, port) && dp.Allows(src.id, true, proto, port)
}

// allowedTo is the egress verdict from src to an address outside the pods:
// its identity is the longest CIDR identity holding it, or world.
func (m mesh) allowedTo(t *testing.T, src pod, addr string, proto uint8, port uint16) bool {
	t.Helper()
	e := m[src.cluster]
	a := netip.MustParseAddr(addr)
	peer, best := identity.ReservedWorld, -1
	for p, id := range e.CIDRIdentities() {
		if p.Contains(a) && p.Bits() > best {
			peer, best = id, p.Bits()
		}
	}
	sp, _ := e.EndpointPolicy(src.ns + "/" + src.name)
	return sp.Allows(peer, false, proto, port)
}

// apply adds a policy given as YAML (a NetworkPolicy or one of the
// project's kinds) to the engine of cluster, failing on problems unless
// wantProblems.
func (m mesh) apply(t *testing.T, cluster, doc string) []Problem {
	t.Helper()
	var meta struct{ Kind string }
	if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
		t.Fatal(err)
	}
	e := m[cluster]
	var key PolicyKey
	var c *Compiled
	switch meta.Kind {
	case "NetworkPolicy":
		np := &networkingv1.NetworkPolicy{}
		if err := yaml.UnmarshalStrict([]byte(doc), np); err != nil {
			t.Fatal(err)
		}
		key, c = e.CompileNetworkPolicy(np)
	case "ClusterMeshNetworkPolicy":
		p := &cmv1.ClusterMeshNetworkPolicy{}
		if err := yaml.UnmarshalStrict([]byte(doc), p); err != nil {
			t.Fatal(err)
		}
		key, c = e.CompileClusterMeshPolicy(p)
	case "ClusterMeshClusterwideNetworkPolicy":
		p := &cmv1.ClusterMeshClusterwideNetworkPolicy{}
		if err := yaml.UnmarshalStrict([]byte(doc), p); err != nil {
			t.Fatal(err)
		}
		key, c = e.CompileClusterwidePolicy(p)
	default:
		t.Fatalf("unknown kind %q", meta.Kind)
	}
	e.UpsertPolicy(key, c)
	return c.Problems()
}
