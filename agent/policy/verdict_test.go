package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/clustermesh/clustermesh/identity"
)

type check struct {
	src   pod
	dst   *pod   // a pod, or
	addr  string // an address outside the pods (egress only)
	proto uint8
	port  uint16
	want  bool
}

func to(p pod) *pod { return &p }

type policyDoc struct{ cluster, yaml string }

// The seeds' manifests (Cilium's cluster mesh policy example), with only
// apiVersion and kind changed.
const (
	seedEgress = `
apiVersion: clustermesh.io/v1alpha1
kind: ClusterMeshNetworkPolicy
metadata:
  name: allow-cross-cluster
  namespace: default
spec:
  description: "Allow x-wing in cluster1 to contact rebel-base in cluster2"
  endpointSelector:
    matchLabels:
      name: x-wing
      io.cilium.k8s.policy.cluster: cluster1
  egress:
  - toEndpoints:
    - matchLabels:
        name: rebel-base
        io.cilium.k8s.policy.cluster: cluster2
`
	seedIngress = `
apiVersion: clustermesh.io/v1alpha1
kind: ClusterMeshNetworkPolicy
metadata:
  name: allow-cross-cluster
  namespace: default
spec:
  description: "Allow x-wing in cluster1 to contact rebel-base in cluster2"
  endpointSelector:
    matchLabels:
      name: rebel-base
      io.cilium.k8s.policy.cluster: cluster2
  ingress:
  - fromEndpoints:
    - matchLabels:
        name: x-wing
        io.cilium.k8s.policy.cluster: cluster1
`
	// rebel-base of cluster2 accepts x-wing, without naming a cluster.
	ingressNoCluster = `
apiVersion: clustermesh.io/v1alpha1
kind: ClusterMeshNetworkPolicy
metadata: {name: no-cluster, namespace: default}
spec:
  endpointSelector: {matchLabels: {name: rebel-base}}
  ingress:
  - fromEndpoints: [{matchLabels: {name: x-wing}}]
`
	ingressAnyCluster = `
apiVersion: clustermesh.io/v1alpha1
kind: ClusterMeshNetworkPolicy
metadata: {name: any-cluster, namespace: default}
spec:
  endpointSelector: {matchLabels: {name: rebel-base}}
  ingress:
  - fromEndpoints:
    - matchLabels: {name: x-wing}
      matchExpressions: [{key: io.cilium.k8s.policy.cluster, operator: Exists}]
`
	dbFromDevClients = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: dev}}
      podSelector: {matchLabels: {app: client}}
    ports: [{protocol: TCP, port: 5432}]
`
	dbNamedPort = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-named, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{namespaceSelector: {}}]
    ports: [{port: postgres}]
`
	clientEgressRange = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress, namespace: dev}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: prod}}}]
    ports: [{protocol: TCP, port: 8000, endPort: 8080}, {port: postgres}]
  - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]
`
	clientEgressDenyAll = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: dev}
spec:
  podSelector: {}
  policyTypes: [Egress]
`
	cnpCIDRAndWorld = `
apiVersion: clustermesh.io/v1alpha1
kind: ClusterMeshNetworkPolicy
metadata: {name: cidr, namespace: dev}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toCIDRSet: [{cidr: 192.168.0.0/16, except: [192.168.9.0/24]}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  - toEntities: [cluster]
`
	cnpWorld = `
apiVersion: clustermesh.io/v1alpha1
kind: ClusterMeshNetworkPolicy
metadata: {name: world, namespace: dev}
spec:
  endpointSelector: {matchLabels: {app: other}}
  egress:
  - toEntities: [world]
`
	ccnpDenyTie = `
apiVersion: clustermesh.io/v1alpha1
kind: ClusterMeshClusterwideNetworkPolicy
metadata: {name: deny-tie}
spec:
  endpointSelector: {matchLabels: {name: rebel-base}}
  ingress:
  - fromEntities: [cluster]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {name: tie-fighter}}]
`
	denyOnlyTie = `
apiVersion: clustermesh.io/v1alpha1
kind: ClusterMeshNetworkPolicy
metadata: {name: deny-only, namespace: default}
spec:
  endpointSelector: {matchLabels: {name: rebel-base}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {name: tie-fighter}}]
`
	partlyInvalid = `
apiVersion: clustermesh.io/v1alpha1
kind: ClusterMeshNetworkPolicy
metadata: {name: partly-invalid, namespace: default}
spec:
  endpointSelector: {matchLabels: {name: rebel-base}}
  ingress:
  - fromEntities: [galaxy]
  - fromCIDR: [10.0.0.0/33]
  - fromEndpoints: [{matchExpressions: [{key: name, operator: Equals, values: [x]}]}]
  - fromEndpoints: [{matchLabels: {name: x-wing}}]
    toPorts: [{ports: [{port: "http-alt", protocol: TCP}, {port: "99999"}]}]
  - fromEndpoints: [{matchLabels: {name: tie-fighter}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`
)

func TestVerdicts(t *testing.T) {
	const tcp, udp = ProtoTCP, ProtoUDP
	for _, tc := range []struct {
		name         string
		localDefault bool
		policies     []policyDoc
		problems     []string // reasons expected, in order
		checks       []check
	}{
		{name: "no policy allows everything", localDefault: true, checks: []check{
			{src: xwing, dst: to(base2), proto: tcp, port: 80, want: true},
			{src: tie, dst: to(db), proto: udp, port: 53, want: true},
			{src: client, addr: "8.8.8.8", proto: tcp, port: 443, want: true},
		}},
		{name: "seed manifests: x-wing of cluster1 to rebel-base of cluster2", localDefault: true,
			policies: []policyDoc{{"cluster1", seedEgress}, {"cluster2", seedIngress}},
			checks: []check{
				{src: xwing, dst: to(base2), proto: tcp, port: 80, want: true},
				{src: xwing, dst: to(baseLocal), proto: tcp, port: 80, want: false}, // egress names cluster2
				{src: tie, dst: to(base2), proto: tcp, port: 80, want: false},       // ingress of cluster2
				{src: xwing2, dst: to(base2), proto: tcp, port: 80, want: false},    // ingress names cluster1
				{src: tie, dst: to(baseLocal), proto: tcp, port: 80, want: true},    // nothing selects these
			}},
		{name: "a selector without a cluster selects the local cluster only", localDefault: true,
			policies: []policyDoc{{"cluster2", ingressNoCluster}},
			checks: []check{
				{src: xwing, dst: to(base2), proto: tcp, port: 80, want: false},
				{src: xwing2, dst: to(base2), proto: tcp, port: 80, want: true},
			}},
		{name: "the local-cluster default switched off", localDefault: false,
			policies: []policyDoc{{"cluster2", ingressNoCluster}},
			checks: []check{
				{src: xwing, dst: to(base2), proto: tcp, port: 80, want: true},
				{src: xwing2, dst: to(base2), proto: tcp, port: 80, want: true},
				{src: tie, dst: to(base2), proto: tcp, port: 80, want: false},
			}},
		{name: "Exists on the cluster key reaches every cluster", localDefault: true,
			policies: []policyDoc{{"cluster2", ingressAnyCluster}},
			checks: []check{
				{src: xwing, dst: to(base2), proto: tcp, port: 80, want: true},
				{src: xwing2, dst: to(base2), proto: tcp, port: 80, want: true},
				{src: tie, dst: to(base2), proto: tcp, port: 80, want: false},
			}},
		{name: "NetworkPolicy: namespaceSelector and podSelector combined, port and protocol", localDefault: true,
			policies: []policyDoc{{"cluster1", dbFromDevClients}},
			checks: []check{
				{src: client, dst: to(db), proto: tcp, port: 5432, want: true},
				{src: client, dst: to(db), proto: tcp, port: 5433, want: false},
				{src: client, dst: to(db), proto: udp, port: 5432, want: false},
				{src: other, dst: to(db), proto: tcp, port: 5432, want: false},
				{src: xwing, dst: to(db), proto: tcp, port: 5432, want: false},
				{src: db, dst: to(client), proto: tcp, port: 80, want: true}, // egress of db not isolated
			}},
		{name: "NetworkPolicy: named port, namespaceSelector {} is the local cluster", localDefault: true,
			policies: []policyDoc{{"cluster1", dbNamedPort}},
			checks: []check{
				{src: client, dst: to(db), proto: tcp, port: 5432, want: true},
				{src: xwing, dst: to(db), proto: tcp, port: 5432, want: true},
				{src: client, dst: to(db), proto: tcp, port: 80, want: false},
			}},
		{name: "NetworkPolicy: egress isolation, endPort, named port, ipBlock with except", localDefault: true,
			policies: []policyDoc{{"cluster1", clientEgressRange}},
			checks: []check{
				{src: client, dst: to(db), proto: tcp, port: 8000, want: true},
				{src: client, dst: to(db), proto: tcp, port: 8050, want: true},
				{src: client, dst: to(db), proto: tcp, port: 8080, want: true},
				{src: client, dst: to(db), proto: tcp, port: 8081, want: false},
				{src: client, dst: to(db), proto: tcp, port: 5432, want: true}, // postgres
				{src: client, dst: to(db), proto: udp, port: 8050, want: false},
				{src: client, dst: to(other), proto: tcp, port: 8050, want: false},
				{src: client, addr: "10.2.3.4", proto: udp, port: 53, want: true},
				{src: client, addr: "10.1.2.3", proto: udp, port: 53, want: false},
				{src: client, addr: "8.8.8.8", proto: tcp, port: 443, want: false},
				{src: other, dst: to(db), proto: tcp, port: 9999, want: true}, // not selected
				{src: tie, dst: to(client), proto: tcp, port: 80, want: true}, // ingress not isolated
			}},
		{name: "NetworkPolicy: egress default deny of a namespace", localDefault: true,
			policies: []policyDoc{{"cluster1", clientEgressDenyAll}},
			checks: []check{
				{src: client, dst: to(db), proto: tcp, port: 5432, want: false},
				{src: other, addr: "8.8.8.8", proto: udp, port: 53, want: false},
				{src: xwing, dst: to(client), proto: tcp, port: 80, want: true},
			}},
		{name: "policy kind: toCIDRSet with except and ports, toEntities cluster", localDefault: true,
			policies: []policyDoc{{"cluster1", cnpCIDRAndWorld}, {"cluster1", cnpWorld}},
			checks: []check{
				{src: client, addr: "192.168.1.1", proto: tcp, port: 443, want: true},
				{src: client, addr: "192.168.1.1", proto: tcp, port: 80, want: false},
				{src: client, addr: "192.168.9.9", proto: tcp, port: 443, want: false},
				{src: client, addr: "8.8.8.8", proto: tcp, port: 443, want: false},
				{src: client, dst: to(tie), proto: udp, port: 9, want: true},     // cluster entity
				{src: client, dst: to(base2), proto: tcp, port: 80, want: false}, // not this cluster
				{src: other, addr: "8.8.8.8", proto: tcp, port: 443, want: true},
				{src: other, addr: "192.168.9.9", proto: tcp, port: 22, want: true}, // CIDR identities are world
				{src: other, dst: to(db), proto: tcp, port: 5432, want: false},
			}},
		{name: "cluster-wide policy: deny wins over allow", localDefault: true,
			policies: []policyDoc{{"cluster1", ccnpDenyTie}},
			checks: []check{
				{src: tie, dst: to(baseLocal), proto: tcp, port: 80, want: false},
				{src: xwing, dst: to(baseLocal), proto: tcp, port: 80, want: true},
				{src: db, dst: to(baseLocal), proto: tcp, port: 80, want: true},
				{src: xwing2, dst: to(baseLocal), proto: tcp, port: 80, want: false}, // not this cluster
			}},
		{name: "a deny-only policy denies only what it names", localDefault: true,
			policies: []policyDoc{{"cluster1", denyOnlyTie}},
			checks: []check{
				{src: tie, dst: to(baseLocal), proto: tcp, port: 80, want: false},
				{src: xwing, dst: to(baseLocal), proto: tcp, port: 80, want: true},
				{src: client, dst: to(baseLocal), proto: udp, port: 53, want: true},
			}},
		{name: "invalid parts are reported and left out, the rest applies", localDefault: true,
			policies: []policyDoc{{"cluster1", partlyInvalid}},
			problems: []string{"UnknownEntity", "InvalidCIDR", "InvalidSelector", "InvalidPort"},
			checks: []check{
				{src: tie, dst: to(baseLocal), proto: tcp, port: 80, want: true},
				{src: tie, dst: to(baseLocal), proto: tcp, port: 81, want: false},
				{src: xwing, dst: to(baseLocal), proto: tcp, port: 80, want: false}, // no http-alt port: nothing
				{src: db, dst: to(baseLocal), proto: tcp, port: 80, want: false},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMesh(tc.localDefault)
			var reasons []string
			for _, p := range tc.policies {
				for _, pr := range m.apply(t, p.cluster, p.yaml) {
					reasons = append(reasons, pr.Reason)
					if pr.Field == "" || pr.Message == "" {
						t.Errorf("problem without field or message: %+v", pr)
					}
				}
			}
			if strings.Join(reasons, ",") != strings.Join(tc.problems, ",") {
				t.Errorf("problems %v, want %v", reasons, tc.problems)
			}
			run := func(phase string) {
				for _, c := range tc.checks {
					var got bool
					what := c.addr
					if c.dst != nil {
						got, what = m.allowed(t, c.src, *c.dst, c.proto, c.port), c.dst.cluster+"/"+c.dst.name
					} else {
						got = m.allowedTo(t, c.src, c.addr, c.proto, c.port)
					}
					if got != c.want {
						t.Errorf("%s: %s/%s → %s proto %d port %d: allowed=%v, want %v", phase, c.src.cluster, c.src.name, what, c.proto, c.port, got, c.want)
					}
					if traced := m.traced(t, c); traced != got {
						t.Errorf("%s: %s/%s → %s proto %d port %d: Trace says allowed=%v, the datapath policy %v", phase, c.src.cluster, c.src.name, what, c.proto, c.port, traced, got)
					}
				}
			}
			run("incremental")
			for _, e := range m {
				e.Recompute()
			}
			run("after a full recompute")
			// Deleting every policy allows everything again.
			for _, e := range m {
				for k := range e.policies {
					e.DeletePolicy(k)
				}
				if n := len(e.CIDRIdentities()); n != 0 {
					t.Errorf("%d CIDR identities left after every policy was deleted", n)
				}
			}
			for _, c := range tc.checks {
				if c.dst != nil && !m.allowed(t, c.src, *c.dst, c.proto, c.port) {
					t.Errorf("policy deleted: %s → %s still denied", c.src.name, c.dst.name)
				}
			}
		})
	}
}

// A NetworkPolicy's ipBlock selects pods by address (its rules are by
// address: a pod inside the block is allowed whatever its identity, one in
// an except hole is not); a Cilium-style CIDR rule does not select pods.
func TestIPBlockSelectsPodsByAddress(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		byAddr    bool
	}{
		{"NetworkPolicy ipBlock", clientEgressRange, true},
		{"toCIDRSet", `
apiVersion: clustermesh.io/v1alpha1
kind: ClusterMeshNetworkPolicy
metadata: {name: cidr-only, namespace: dev}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}]
`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMesh(true)
			m.apply(t, "cluster1", tc.doc)
			e := m["cluster1"]
			var block, hole identity.NumericIdentity
			var inside, outside netip.Prefix
			for p, id := range e.CIDRIdentities() {
				if block == 0 || p.Bits() < inside.Bits() {
					if block != 0 {
						hole, outside = block, inside
					}
					block, inside = id, p
				} else {
					hole, outside = id, p
				}
			}
			if block == 0 || hole == 0 {
				t.Fatalf("CIDR identities %v: want a block and an except hole", e.CIDRIdentities())
			}
			p, _ := e.EndpointPolicy(client.ns + "/" + client.name)
			for _, r := range p.Rules {
				if r.Identity == block && r.ByAddress != tc.byAddr {
					t.Fatalf("rule %+v: ByAddress %v, want %v", r, r.ByAddress, tc.byAddr)
				}
			}
			// A pod (db's identity) at an address inside the block, and one
			// in the hole.
			proto, port := ProtoTCP, uint16(443)
			if got := p.AllowsAt(db.id, block, false, proto, port); got != tc.byAddr {
				t.Errorf("pod inside %v: allowed %v, want %v", inside, got, tc.byAddr)
			}
			if p.AllowsAt(db.id, hole, false, proto, port) {
				t.Errorf("pod inside the except %v: allowed", outside)
			}
			if !p.AllowsAt(block, block, false, proto, port) {
				t.Errorf("an address of the block outside the pods: refused")
			}
		})
	}
}
