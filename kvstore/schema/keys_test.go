package schema

import (
	"net/netip"
	"strings"
	"testing"
)

func TestKeyBuilders(t *testing.T) {
	for _, tc := range []struct {
		paths Paths
		root  string
	}{{DefaultPaths(), "cilium"}, {Paths{}, "cilium"}, {Paths{Root: "test/mesh"}, "test/mesh"}} {
		p, r := tc.paths, tc.root
		t.Run(r, func(t *testing.T) {
			for _, c := range []struct{ got, want string }{
				{p.ClusterConfig("c1"), r + "/cluster-config/c1"},
				{p.StatePrefix(), r + "/state/"},
				{p.NodesPrefix(), r + "/state/nodes/v1"},
				{p.Node("c1", "n1"), r + "/state/nodes/v1/c1/n1"},
				{p.ClusterNodesPrefix("c1"), r + "/state/nodes/v1/c1/"},
				{p.IdentitiesPrefix(), r + "/state/identities/v1"},
				{p.Identity(12345), r + "/state/identities/v1/id/12345"},
				{p.IdentityIDPrefix(), r + "/state/identities/v1/id/"},
				{p.IPPrefix(), r + "/state/ip/v1"},
				{p.IP(mustAddr("10.0.0.1")), r + "/state/ip/v1/default/10.0.0.1"},
				{p.IP(mustAddr("::ffff:10.0.0.1")), r + "/state/ip/v1/default/10.0.0.1"},
				{p.IP(mustAddr("fe80::1%eth0")), r + "/state/ip/v1/default/fe80::1"},
				{p.IPCIDR(netip.MustParsePrefix("fd00::/64")), r + "/state/ip/v1/default/fd00::/64"},
				{p.IPCIDR(netip.MustParsePrefix("::ffff:10.0.0.0/120")), r + "/state/ip/v1/default/10.0.0.0/24"},
				{p.IPDefaultPrefix(), r + "/state/ip/v1/default/"},
				{p.ServicesPrefix(), r + "/state/services/v1"},
				{p.Service("c1", "ns", "svc"), r + "/state/services/v1/c1/ns/svc"},
				{p.ClusterServicesPrefix("c1"), r + "/state/services/v1/c1/"},
				{p.Synced("c1", p.NodesPrefix()), r + "/synced/c1/" + r + "/state/nodes/v1"},
				{p.SyncedPrefix("c1"), r + "/synced/c1/"},
				{p.Heartbeat(), r + "/.heartbeat"},
			} {
				if c.got != c.want {
					t.Errorf("got %q, want %q", c.got, c.want)
				}
			}
		})
	}
	if got := DefaultPaths().Synced("c1", DefaultPaths().NodesPrefix()); got != "cilium/synced/c1/cilium/state/nodes/v1" {
		t.Errorf("Synced = %q", got)
	}
}

// TestCacheKeys checks the cache layout against the keys Cilium's
// KVStoreMesh writes (kvstore.StateToCachePrefix plus the cluster name for
// identities and ip entries), and that each parser reads what its builder
// writes and refuses the state layout.
func TestCacheKeys(t *testing.T) {
	p := DefaultPaths().Cache("c1")
	if p.Cached() != "c1" || DefaultPaths().Cached() != "" {
		t.Fatalf("Cached() = %q", p.Cached())
	}
	for _, c := range []struct{ got, want string }{
		{p.StatePrefix(), "cilium/cache/"},
		{p.NodesPrefix(), "cilium/cache/nodes/v1"},
		{p.Node("c1", "n1"), "cilium/cache/nodes/v1/c1/n1"},
		{p.IdentitiesPrefix(), "cilium/cache/identities/v1"},
		{p.Identity(65537), "cilium/cache/identities/v1/c1/id/65537"},
		{p.IPPrefix(), "cilium/cache/ip/v1"},
		{p.IP(mustAddr("fd00::1")), "cilium/cache/ip/v1/c1/fd00::1"},
		{p.IPCIDR(netip.MustParsePrefix("10.0.0.0/24")), "cilium/cache/ip/v1/c1/10.0.0.0/24"},
		{p.Service("c1", "ns", "svc"), "cilium/cache/services/v1/c1/ns/svc"},
		{p.Synced("c1", p.IPPrefix()), "cilium/synced/c1/cilium/cache/ip/v1"},
		{p.ClusterConfig("c1"), "cilium/cluster-config/c1"},
		{p.Heartbeat(), "cilium/.heartbeat"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if id, err := p.ParseIdentityKey("cilium/cache/identities/v1/c1/id/65537"); err != nil || id != 65537 {
		t.Errorf("ParseIdentityKey = %d, %v", id, err)
	}
	if a, err := p.ParseIPKey("cilium/cache/ip/v1/c1/fd00::1"); err != nil || a != mustAddr("fd00::1") {
		t.Errorf("ParseIPKey = %v, %v", a, err)
	}
	for _, key := range []string{"cilium/state/ip/v1/default/10.0.0.1", "cilium/cache/ip/v1/c2/10.0.0.1"} {
		if _, err := p.ParseIPKey(key); err == nil {
			t.Errorf("the cache of c1 accepts %s", key)
		}
	}
	if _, err := p.ParseIdentityKey("cilium/cache/identities/v1/c2/id/5"); err == nil {
		t.Error("the cache of c1 accepts an identity of c2's cache")
	}
}

func TestKeyParsersRoundTrip(t *testing.T) {
	p := Paths{Root: "r"}
	for _, c := range [][2]string{{"c1", "n1"}, {"cluster-a", "ip-10-0-0-1.ec2.internal"}, {"c", strings.Repeat("n", maxSegmentLen)}} {
		cluster, node, err := p.ParseNodeKey(p.Node(c[0], c[1]))
		if err != nil || cluster != c[0] || node != c[1] {
			t.Errorf("ParseNodeKey(Node(%q, %q)) = %q, %q, %v", c[0], c[1], cluster, node, err)
		}
	}
	cluster, ns, name, err := p.ParseServiceKey(p.Service("c1", "kube-system", "kube-dns"))
	if err != nil || cluster != "c1" || ns != "kube-system" || name != "kube-dns" {
		t.Errorf("ParseServiceKey = %q, %q, %q, %v", cluster, ns, name, err)
	}
	cluster, err = p.ParseClusterConfigKey(p.ClusterConfig("c-9"))
	if err != nil || cluster != "c-9" {
		t.Errorf("ParseClusterConfigKey = %q, %v", cluster, err)
	}
	for _, id := range []uint32{1, 9, 10, 256, 65536, MaxIdentity} {
		got, err := p.ParseIdentityKey(p.Identity(id))
		if err != nil || got != id {
			t.Errorf("ParseIdentityKey(Identity(%d)) = %d, %v", id, got, err)
		}
	}
	for _, s := range []string{"10.0.0.1", "0.0.0.0", "255.255.255.255", "fd00::1", "::", "2001:db8::1:0:0:1"} {
		addr := mustAddr(s)
		got, err := p.ParseIPKey(p.IP(addr))
		if err != nil || got != addr {
			t.Errorf("ParseIPKey(IP(%s)) = %v, %v", s, got, err)
		}
		pfx, err := p.ParseIPPrefixKey(p.IP(addr))
		if err != nil || pfx != netip.PrefixFrom(addr, addr.BitLen()) {
			t.Errorf("ParseIPPrefixKey(IP(%s)) = %v, %v", s, pfx, err)
		}
	}
	for _, s := range []string{"10.0.0.0/8", "0.0.0.0/0", "10.0.0.1/32", "fd00::/64", "::/0", "fd00::1/128"} {
		pfx := netip.MustParsePrefix(s)
		got, err := p.ParseIPPrefixKey(p.IPCIDR(pfx))
		if err != nil || got != pfx {
			t.Errorf("ParseIPPrefixKey(IPCIDR(%s)) = %v, %v", s, got, err)
		}
	}
}

func TestKeyParsersReject(t *testing.T) {
	parsers := map[string]func(string) error{
		"node": func(k string) error { _, _, err := ParseNodeKey(k); return err },
		"service": func(k string) error {
			_, _, _, err := ParseServiceKey(k)
			return err
		},
		"identity":      func(k string) error { _, err := ParseIdentityKey(k); return err },
		"ip":            func(k string) error { _, err := ParseIPKey(k); return err },
		"ip prefix":     func(k string) error { _, err := ParseIPPrefixKey(k); return err },
		"clusterconfig": func(k string) error { _, err := ParseClusterConfigKey(k); return err },
	}
	long := strings.Repeat("x", maxSegmentLen+1)
	cases := []struct {
		parser, key, fragment string
	}{
		{"node", "cilium/state/nodes/v1/c1", "want 2 segment(s) <cluster>/<node>"},
		{"node", "cilium/state/nodes/v1/c1/n1/x", "got 3"},
		{"node", "cilium/state/nodes/v1//n1", `cluster segment "" is empty`},
		{"node", "cilium/state/nodes/v1/c1/", `node segment "" is empty`},
		{"node", "cilium/state/nodes/v1/../n1", "relative path element"},
		{"node", "cilium/state/nodes/v1/c1/..", "relative path element"},
		{"node", "cilium/state/nodes/v1/c1/.", "relative path element"},
		{"node", "cilium/state/nodes/v2/c1/n1", `not under "cilium/state/nodes/v1/"`},
		{"node", "other/state/nodes/v1/c1/n1", "not under"},
		{"node", "cilium/state/nodes/v1", "not under"},
		{"node", "cilium/state/nodes/v1c1/n1", "not under"},
		{"node", "/cilium/state/nodes/v1/c1/n1", "not under"},
		{"node", "cilium/state/nodes/v1/c1/n 1", "whitespace"},
		{"node", "cilium/state/nodes/v1/c1/n\x001", "control character"},
		{"node", "cilium/state/nodes/v1/c1/n\xff", "UTF-8"},
		{"node", "cilium/state/nodes/v1/c1/" + long, "longer than 253 bytes"},
		{"node", "", "not under"},
		{"service", "cilium/state/services/v1/c1/ns", "want 3 segment(s)"},
		{"service", "cilium/state/services/v1/c1/ns/svc/x", "got 4"},
		{"service", "cilium/state/services/v1/c1//svc", `namespace segment "" is empty`},
		{"service", "cilium/state/services/v1/c1/ns/..", "relative path element"},
		{"service", "cilium/state/nodes/v1/c1/ns/svc", "not under"},
		{"identity", "cilium/state/identities/v1/id/0", "identity 0 is invalid"},
		{"identity", "cilium/state/identities/v1/id/00", "leading zero"},
		{"identity", "cilium/state/identities/v1/id/0123", "leading zero"},
		{"identity", "cilium/state/identities/v1/id/+1", "not an unsigned decimal"},
		{"identity", "cilium/state/identities/v1/id/-1", "not an unsigned decimal"},
		{"identity", "cilium/state/identities/v1/id/ 1", "not an unsigned decimal"},
		{"identity", "cilium/state/identities/v1/id/1 ", "not an unsigned decimal"},
		{"identity", "cilium/state/identities/v1/id/1e3", "not an unsigned decimal"},
		{"identity", "cilium/state/identities/v1/id/0x10", "not an unsigned decimal"},
		{"identity", "cilium/state/identities/v1/id/16777216", "out of range 0..16777215"},
		{"identity", "cilium/state/identities/v1/id/4294967296", "out of range"},
		{"identity", "cilium/state/identities/v1/id/99999999999999999999", "out of range"},
		{"identity", "cilium/state/identities/v1/id/", "is empty"},
		{"identity", "cilium/state/identities/v1/id/1/2", "not an unsigned decimal"},
		{"identity", "cilium/state/identities/v1/value/1", "not under"},
		{"ip", "cilium/state/ip/v1/default/10.0.0.0/24", "names prefix 10.0.0.0/24"},
		{"ip", "cilium/state/ip/v1/default/010.0.0.1", "not an IP address"},
		{"ip", "cilium/state/ip/v1/default/::ffff:10.0.0.1", "IPv4-mapped; write it as 10.0.0.1"},
		{"ip", "cilium/state/ip/v1/default/fe80::1%eth0", "has a zone"},
		{"ip", "cilium/state/ip/v1/default/2001:DB8::1", `not in canonical form "2001:db8::1"`},
		{"ip", "cilium/state/ip/v1/default/2001:0db8::1", "not in canonical form"},
		{"ip", "cilium/state/ip/v1/default/", "not an IP address"},
		{"ip", "cilium/state/ip/v1/other/10.0.0.1", "not under"},
		{"ip prefix", "cilium/state/ip/v1/default/10.0.0.0/", "prefix length \"\" is empty"},
		{"ip prefix", "cilium/state/ip/v1/default/10.0.0.0/33", "out of range 0..32"},
		{"ip prefix", "cilium/state/ip/v1/default/fd00::/129", "out of range 0..128"},
		{"ip prefix", "cilium/state/ip/v1/default/10.0.0.0/024", "leading zero"},
		{"ip prefix", "cilium/state/ip/v1/default/10.0.0.0/+8", "not an unsigned decimal"},
		{"ip prefix", "cilium/state/ip/v1/default/10.0.0.1/24", "host bits set (want 10.0.0.0/24)"},
		{"ip prefix", "cilium/state/ip/v1/default/10.0.0.0/24/1", "not an unsigned decimal"},
		{"clusterconfig", "cilium/cluster-config/", "is empty"},
		{"clusterconfig", "cilium/cluster-config/c1/x", "got 2"},
		{"clusterconfig", "cilium/cluster-config/..", "relative path element"},
		{"clusterconfig", "cilium/cluster-configs/c1", "not under"},
	}
	for _, tc := range cases {
		t.Run(tc.parser+" "+tc.key, func(t *testing.T) {
			checkMalformed(t, parsers[tc.parser](tc.key), tc.key, "invalid etcd key", tc.fragment)
		})
	}
}
