package services

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// A frontend gets only the backends of its own address family: the IPv4
// cluster IP of a dual-stack Service never gets an IPv6 backend (the
// socket load balancer could not connect an IPv4 socket to it), and the
// IPv6 cluster IP never an IPv4 one. IPv4-mapped addresses count as IPv4.
func TestTargetsFamily(t *testing.T) {
	backends := []Backend{
		be(testCluster, "10.1.0.1"), be(testCluster, "fd00:1::1"),
		be("cluster2", "10.2.0.1"), be("cluster2", "fd00:2::1"),
		{Addr: netip.MustParseAddr("::ffff:10.2.0.2"), Cluster: "cluster2", Ports: httpPorts, Ready: true},
	}
	target := func(cluster, ip string) Target {
		return Target{Addr: netip.MustParseAddr(ip), Port: 80, Cluster: cluster}
	}
	for _, tc := range []struct {
		fe   string
		want []Target
	}{
		{"10.96.0.10", []Target{target(testCluster, "10.1.0.1"), target("cluster2", "10.2.0.1"), target("cluster2", "::ffff:10.2.0.2")}},
		{"fd00::a", []Target{target(testCluster, "fd00:1::1"), target("cluster2", "fd00:2::1")}},
		{"::ffff:10.96.0.10", []Target{target(testCluster, "10.1.0.1"), target("cluster2", "10.2.0.1"), target("cluster2", "::ffff:10.2.0.2")}},
	} {
		fe := Frontend{Addr: netip.MustParseAddr(tc.fe), Port: 80, Protocol: schema.ProtocolTCP, Name: "http"}
		if d := cmp.Diff(tc.want, Targets(fe, backends), addrCmp); d != "" {
			t.Errorf("Targets(%v) (-want +got):\n%s", fe, d)
		}
	}
}

// Affinity is decided per family: a family without a preferred backend
// falls back to the other side's backends of that family, whatever the
// other family has.
func TestMergeAffinityPerFamily(t *testing.T) {
	dual := []schema.ClusterService{peer("cluster2", "10.2.0.1", "fd00:2::1")}
	only4 := []schema.ClusterService{peer("cluster2", "10.2.0.1")}
	only6 := []schema.ClusterService{peer("cluster2", "fd00:2::1")}
	for _, tc := range []struct {
		name    string
		local   []Backend
		ann     Annotations
		remotes []schema.ClusterService
		want    []Backend
	}{
		{name: "local: dual-stack local backends hide the peer's", local: localReady("10.1.0.1", "fd00:1::1"), ann: global(AffinityLocal), remotes: dual,
			want: localReady("10.1.0.1", "fd00:1::1")},
		{name: "local: no local IPv6 backend, the peer's IPv6 one is used", local: localReady("10.1.0.1"), ann: global(AffinityLocal), remotes: dual,
			want: []Backend{be(testCluster, "10.1.0.1"), be("cluster2", "fd00:2::1")}},
		{name: "local: no local IPv4 backend, the peer's IPv4 one is used", local: localReady("fd00:1::1"), ann: global(AffinityLocal), remotes: dual,
			want: []Backend{be(testCluster, "fd00:1::1"), be("cluster2", "10.2.0.1")}},
		{name: "local: the local IPv6 backend not ready", local: []Backend{be(testCluster, "10.1.0.1"), localWith("fd00:1::1", false, false)},
			ann: global(AffinityLocal), remotes: dual, want: []Backend{be(testCluster, "10.1.0.1"), be("cluster2", "fd00:2::1")}},
		{name: "remote: dual-stack peer hides the local backends", local: localReady("10.1.0.1", "fd00:1::1"), ann: global(AffinityRemote), remotes: dual,
			want: []Backend{be("cluster2", "10.2.0.1"), be("cluster2", "fd00:2::1")}},
		{name: "remote: IPv4-only peer, the local IPv6 backend is used", local: localReady("10.1.0.1", "fd00:1::1"), ann: global(AffinityRemote), remotes: only4,
			want: []Backend{be(testCluster, "fd00:1::1"), be("cluster2", "10.2.0.1")}},
		{name: "remote: IPv6-only peer, the local IPv4 backend is used", local: localReady("10.1.0.1", "fd00:1::1"), ann: global(AffinityRemote), remotes: only6,
			want: []Backend{be(testCluster, "10.1.0.1"), be("cluster2", "fd00:2::1")}},
		{name: "none: every family of both", local: localReady("10.1.0.1", "fd00:1::1"), ann: global(AffinityNone), remotes: dual,
			want: []Backend{be(testCluster, "10.1.0.1"), be(testCluster, "fd00:1::1"), be("cluster2", "10.2.0.1"), be("cluster2", "fd00:2::1")}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkMerge(t, tc.local, tc.ann, tc.remotes, tc.want) })
	}
}

// A dual-stack Service end to end on the importing side: Local reads both
// cluster IPs and the backends of its IPv4 and IPv6 EndpointSlices, Merge
// adds a dual-stack peer's (affinity remote, the peer exporting IPv4 only
// for the second step), and each cluster IP gets only backends of its
// family.
func TestDualStackServiceTargets(t *testing.T) {
	http := []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)}
	svc := newService([]string{"10.96.0.10", "fd00::a"}, svcPort("http", corev1.ProtocolTCP, 80))
	slices := []*discoveryv1.EndpointSlice{
		newSlice("cart-v4", http, ready("10.1.0.1")),
		withAddressType(newSlice("cart-v6", http, ready("fd00:1::1")), discoveryv1.AddressTypeIPv6),
	}
	fes, local, errs := Local(testCluster, svc, slices)
	if len(errs) > 0 || len(fes) != 2 || len(local) != 2 {
		t.Fatalf("Local: frontends %v, backends %v, problems %v", fes, local, errs)
	}
	target := func(cluster, ip string, port uint16) Target {
		return Target{Addr: netip.MustParseAddr(ip), Port: port, Cluster: cluster}
	}
	for _, step := range []struct {
		name   string
		remote schema.ClusterService
		want   map[string][]Target
	}{
		{"dual-stack peer", peer("cluster2", "10.2.0.1", "fd00:2::1"), map[string][]Target{
			"10.96.0.10": {target("cluster2", "10.2.0.1", 80)},
			"fd00::a":    {target("cluster2", "fd00:2::1", 80)},
		}},
		{"IPv4-only peer", peer("cluster2", "10.2.0.1"), map[string][]Target{
			"10.96.0.10": {target("cluster2", "10.2.0.1", 80)},
			"fd00::a":    {target(testCluster, "fd00:1::1", 8080)},
		}},
	} {
		selected := Merge(testCluster, testNS, testName, local, global(AffinityRemote), []schema.ClusterService{step.remote})
		for _, fe := range fes {
			if d := cmp.Diff(step.want[fe.Addr.String()], Targets(fe, selected), addrCmp); d != "" {
				t.Errorf("%s: targets of %v (-want +got):\n%s", step.name, fe, d)
			}
		}
	}
}
