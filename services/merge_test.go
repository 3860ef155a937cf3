package services

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Merge fixtures: Service shop/cart (testNS/testName) in cluster1, peers
// cluster2 and cluster3, every backend with port "http" TCP/80.
var (
	httpPorts = map[string]schema.L4Addr{"http": {Protocol: schema.ProtocolTCP, Port: 80}}
	addrCmp   = cmp.Comparer(func(x, y netip.Addr) bool { return x == y })
)

// be is a backend as Merge returns it.
func be(cluster, ip string) Backend {
	return Backend{Addr: netip.MustParseAddr(ip), Cluster: cluster, Ports: httpPorts, Ready: true}
}

func localReady(ips ...string) []Backend {
	out := make([]Backend, 0, len(ips))
	for _, ip := range ips {
		out = append(out, be(testCluster, ip))
	}
	return out
}

func localWith(ip string, ready, terminating bool) Backend {
	b := be(testCluster, ip)
	b.Ready, b.Terminating = ready, terminating
	return b
}

// peer returns the shared shop/cart exported by cluster with the given
// backend addresses.
func peer(cluster string, ips ...string) schema.ClusterService {
	cs := schema.ClusterService{Cluster: cluster, Namespace: testNS, Name: testName, Shared: true, ClusterID: 2,
		Backends: map[string]schema.PortConfiguration{}}
	for _, ip := range ips {
		cs.Backends[ip] = schema.PortConfiguration{"http": l4(schema.ProtocolTCP, 80)}
	}
	return cs
}

func with(cs schema.ClusterService, f func(*schema.ClusterService)) schema.ClusterService {
	f(&cs)
	return cs
}

func global(a Affinity) Annotations { return Annotations{Global: true, Shared: true, Affinity: a} }

func checkMerge(t *testing.T, local []Backend, ann Annotations, remotes []schema.ClusterService, want []Backend) {
	t.Helper()
	got := Merge(testCluster, testNS, testName, local, ann, remotes)
	if d := cmp.Diff(want, got, addrCmp); d != "" {
		t.Errorf("Merge (-want +got):\n%s", d)
	}
}

// TestMergeAffinityLocalSequence follows one Service with affinity local
// through its local backends going away and coming back.
func TestMergeAffinityLocalSequence(t *testing.T) {
	remotes := []schema.ClusterService{peer("cluster2", "10.2.0.1"), peer("cluster3", "10.3.0.1")}
	allRemote := []Backend{be("cluster2", "10.2.0.1"), be("cluster3", "10.3.0.1")}
	steps := []struct {
		name  string
		local []Backend
		want  []Backend
	}{
		{name: "healthy local backends: remote not used", local: localReady("10.1.0.2", "10.1.0.1"), want: localReady("10.1.0.1", "10.1.0.2")},
		{name: "one local backend left: remote still not used", local: []Backend{localWith("10.1.0.1", false, false), be(testCluster, "10.1.0.2")}, want: localReady("10.1.0.2")},
		{name: "all local backends gone: remote used", local: nil, want: allRemote},
		{name: "local backends unhealthy: remote used", local: []Backend{localWith("10.1.0.1", false, false), localWith("10.1.0.2", true, true)}, want: allRemote},
		{name: "local backend back: remote dropped", local: localReady("10.1.0.1"), want: localReady("10.1.0.1")},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) { checkMerge(t, s.local, global(AffinityLocal), remotes, s.want) })
	}
}

func TestMerge(t *testing.T) {
	two := []schema.ClusterService{peer("cluster3", "10.3.0.1"), peer("cluster2", "10.2.0.1")}
	all := []Backend{be(testCluster, "10.1.0.1"), be("cluster2", "10.2.0.1"), be("cluster3", "10.3.0.1")}
	tests := []struct {
		name    string
		local   []Backend
		ann     Annotations
		remotes []schema.ClusterService
		want    []Backend
	}{
		{name: "not global ignores remotes", local: localReady("10.1.0.1"), ann: Annotations{}, remotes: two, want: localReady("10.1.0.1")},
		{name: "not global without local backends", ann: Annotations{Shared: true, Affinity: AffinityRemote}, remotes: two, want: nil},
		{name: "affinity none keeps all", local: localReady("10.1.0.1"), ann: global(AffinityNone), remotes: two, want: all},
		{name: "literal none keeps all", local: localReady("10.1.0.1"), ann: global("none"), remotes: two, want: all},
		{name: "unknown affinity keeps all", local: localReady("10.1.0.1"), ann: global("nearest"), remotes: two, want: all},
		{name: "global not shared still imports", local: localReady("10.1.0.1"), ann: Annotations{Global: true}, remotes: two, want: all},
		{name: "affinity local", local: localReady("10.1.0.1"), ann: global(AffinityLocal), remotes: two, want: localReady("10.1.0.1")},
		{name: "affinity remote", local: localReady("10.1.0.1"), ann: global(AffinityRemote), remotes: two, want: all[1:]},
		{name: "affinity remote without peers falls back to local", local: localReady("10.1.0.1"), ann: global(AffinityRemote), want: localReady("10.1.0.1")},
		{
			name:  "affinity remote with peers without backends falls back to local",
			local: localReady("10.1.0.1"), ann: global(AffinityRemote), remotes: []schema.ClusterService{peer("cluster2")},
			want: localReady("10.1.0.1"),
		},
		{
			name:  "affinity remote with only malformed remote backends falls back to local",
			local: localReady("10.1.0.1"), ann: global(AffinityRemote), remotes: []schema.ClusterService{peer("cluster2", "127.0.0.1")},
			want: localReady("10.1.0.1"),
		},
		{
			name:  "peer that sets shared=false is removed",
			local: localReady("10.1.0.1"), ann: global(AffinityNone),
			remotes: []schema.ClusterService{with(two[0], func(cs *schema.ClusterService) { cs.Shared = false }), two[1]},
			want:    all[:2],
		},
		{
			name:  "affinity remote falls back to local when the only peer stops sharing",
			local: localReady("10.1.0.1"), ann: global(AffinityRemote),
			remotes: []schema.ClusterService{with(two[1], func(cs *schema.ClusterService) { cs.Shared = false })},
			want:    localReady("10.1.0.1"),
		},
		{
			name:  "other services, own cluster and unnamed cluster ignored",
			local: localReady("10.1.0.1"), ann: global(AffinityNone),
			remotes: []schema.ClusterService{
				with(peer("cluster2", "10.2.0.9"), func(cs *schema.ClusterService) { cs.Namespace = "other" }),
				with(peer("cluster2", "10.2.0.8"), func(cs *schema.ClusterService) { cs.Name = "other" }),
				peer(testCluster, "10.1.0.9"),
				peer("", "10.0.0.9"),
			},
			want: localReady("10.1.0.1"),
		},
		{
			name: "terminating and not-ready local backends excluded",
			local: []Backend{
				localWith("10.1.0.1", true, true), localWith("10.1.0.2", false, true),
				localWith("10.1.0.3", false, false), localWith("10.1.0.4", true, false),
			},
			ann: global(AffinityNone), want: localReady("10.1.0.4"),
		},
		{
			name: "local cluster name, unmapped address and copied ports are set on local backends",
			local: []Backend{
				{Addr: netip.MustParseAddr("::ffff:10.1.0.1"), Cluster: "wrong", Ports: httpPorts, Ready: true},
				{Cluster: testCluster, Ready: true}, // zero address: skipped
			},
			ann: global(AffinityNone), want: localReady("10.1.0.1"),
		},
		{
			name:  "duplicate addresses: local first, then cluster name order",
			local: []Backend{localWith("10.9.0.1", true, false), localWith("10.9.0.1", false, false), localWith("10.9.0.2", false, false)},
			ann:   global(AffinityNone),
			remotes: []schema.ClusterService{
				peer("cluster3", "10.9.0.1", "10.9.0.2", "10.9.0.3", "10.9.0.4"),
				peer("cluster2", "10.9.0.3", "::ffff:10.9.0.4"),
			},
			// 10.9.0.2 is a local address (not ready): hidden from peers.
			want: []Backend{be(testCluster, "10.9.0.1"), be("cluster2", "10.9.0.3"), be("cluster2", "10.9.0.4")},
		},
		{
			name: "same cluster twice: first ClusterService wins",
			ann:  global(AffinityNone), remotes: []schema.ClusterService{peer("cluster2", "10.2.0.1"), peer("cluster2", "10.2.0.2")},
			want: []Backend{be("cluster2", "10.2.0.1")},
		},
		{
			name: "malformed remote addresses skipped",
			ann:  global(AffinityNone),
			remotes: []schema.ClusterService{
				peer("cluster2", "10.2.0.1", "not-an-ip", "", "10.2.0.256", "0.0.0.0", "::", "127.0.0.1", "::1",
					"169.254.1.1", "fe80::1", "fe80::1%eth0", "224.0.0.1", "ff02::1", "255.255.255.255", "10.2.0.1/32", "fd00::2"),
				with(peer("cluster3", "10.3.0.1"), func(cs *schema.ClusterService) {
					cs.Backends["10.3.0.2"] = schema.PortConfiguration{"http": l4(schema.ProtocolTCP, 80), "metrics": nil}
					cs.Backends["10.3.0.3"] = schema.PortConfiguration{"http": l4(schema.ProtocolTCP, 0)}
					cs.Backends["10.3.0.4"] = schema.PortConfiguration{"http": l4("ANY", 80)}
					cs.Backends["10.3.0.5"] = nil // no ports: kept, as the schema allows
				}),
			},
			want: []Backend{
				be("cluster2", "10.2.0.1"), be("cluster2", "fd00::2"), be("cluster3", "10.3.0.1"),
				{Addr: netip.MustParseAddr("10.3.0.5"), Cluster: "cluster3", Ports: map[string]schema.L4Addr{}, Ready: true},
			},
		},
		{name: "nothing at all", ann: global(AffinityLocal), want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkMerge(t, tt.local, tt.ann, tt.remotes, tt.want) })
	}
}

// TestMergeDoesNotAlias checks that inputs are not modified and that the
// result shares no map with them.
func TestMergeDoesNotAlias(t *testing.T) {
	local := []Backend{{Addr: netip.MustParseAddr("10.1.0.2"), Cluster: "x", Ports: map[string]schema.L4Addr{"http": {Protocol: "TCP", Port: 80}}, Ready: true}}
	remotes := []schema.ClusterService{peer("cluster2", "10.2.0.1")}
	wantLocal := []Backend{{Addr: netip.MustParseAddr("10.1.0.2"), Cluster: "x", Ports: map[string]schema.L4Addr{"http": {Protocol: "TCP", Port: 80}}, Ready: true}}
	wantRemotes := []schema.ClusterService{peer("cluster2", "10.2.0.1")}

	got := Merge(testCluster, testNS, testName, local, global(AffinityNone), remotes)
	for _, b := range got {
		b.Ports["http"] = schema.L4Addr{Protocol: "UDP", Port: 1}
	}
	if d := cmp.Diff(wantLocal, local, addrCmp); d != "" {
		t.Errorf("local backends changed (-before +after):\n%s", d)
	}
	if d := cmp.Diff(wantRemotes, remotes); d != "" {
		t.Errorf("remotes changed (-before +after):\n%s", d)
	}
}

func TestRemoteBackends(t *testing.T) {
	cs := with(peer("cluster2", "fd00::1", "10.2.0.2", "10.2.0.10", "::ffff:10.2.0.2", "bogus"), func(cs *schema.ClusterService) {
		cs.Shared = false // not looked at
		cs.Backends["10.2.0.10"] = schema.PortConfiguration{"": l4(schema.ProtocolUDP, 53), "dns-tcp": l4(schema.ProtocolTCP, 53)}
	})
	want := []Backend{
		be("cluster2", "10.2.0.2"),
		{Addr: netip.MustParseAddr("10.2.0.10"), Cluster: "cluster2", Ready: true, Ports: map[string]schema.L4Addr{
			"": {Protocol: schema.ProtocolUDP, Port: 53}, "dns-tcp": {Protocol: schema.ProtocolTCP, Port: 53},
		}},
		be("cluster2", "fd00::1"),
	}
	if d := cmp.Diff(want, RemoteBackends(cs), addrCmp); d != "" {
		t.Errorf("RemoteBackends (-want +got):\n%s", d)
	}
	if got := RemoteBackends(schema.ClusterService{}); len(got) != 0 {
		t.Errorf("RemoteBackends(zero) = %v, want none", got)
	}
}

// BenchmarkMerge merges 2 peers of 1000 backends each into 100 local ones.
func BenchmarkMerge(b *testing.B) {
	local := make([]Backend, 0, 100)
	for i := range 100 {
		local = append(local, be(testCluster, fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)))
	}
	remotes := []schema.ClusterService{peer("cluster2"), peer("cluster3")}
	for p, cs := range remotes {
		for i := range 1000 {
			cs.Backends[fmt.Sprintf("10.%d.%d.%d", p+2, i/250, i%250+1)] = schema.PortConfiguration{"http": l4(schema.ProtocolTCP, 80)}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if got := Merge(testCluster, testNS, testName, local, global(AffinityNone), remotes); len(got) != 2100 {
			b.Fatalf("got %d backends, want 2100", len(got))
		}
	}
}
