package claims

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

func claimNode(cluster, name, cidr, ip string) schema.Node {
	n := schema.Node{Name: name, Cluster: cluster, IPAddresses: []schema.NodeAddress{{Type: schema.AddressInternalIP, IP: net.ParseIP(ip)}}}
	if cidr != "" {
		n.IPv4AllocCIDR = schema.NewCIDR(netip.MustParsePrefix(cidr))
	}
	return n
}

// newTestClaims returns the claims of cluster1, whose node n1 has pod CIDR
// 10.1.1.0/24 and address 192.168.1.10; peer cluster3 has an accepted node
// at 192.168.3.10; connect recorded pod CIDRs for cluster2, cluster3 and
// cluster4 (which overlaps cluster3, a misconfiguration).
func newTestClaims(t *testing.T) (*Claims, *state.State) {
	t.Helper()
	st, err := state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	update(t, st, func(w *state.WriteTxn) error {
		if err := w.UpsertNode("cluster1", claimNode("cluster1", "n1", "10.1.1.0/24", "192.168.1.10")); err != nil {
			return err
		}
		return w.UpsertNode("cluster3", claimNode("cluster3", "m1", "10.3.1.0/24", "192.168.3.10"))
	})
	trusts := map[string]remote.Trust{
		"cluster2": {ClusterID: 2, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}},
		"cluster3": {ClusterID: 3, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.3.0.0/16"), netip.MustParsePrefix("fd00:3::/48")}},
		"cluster4": {PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.3.128.0/17")}},
		"cluster5": {}, // connected before connect recorded CIDRs
	}
	c := New("cluster1", st)
	c.SetTrusts(func() map[string]remote.Trust { return trusts })
	return c, st
}

func update(t *testing.T, st *state.State, fn func(*state.WriteTxn) error) {
	t.Helper()
	if err := st.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestClaims(t *testing.T) {
	c, _ := newTestClaims(t)
	for _, tc := range []struct {
		name, peer, prefix, ip string
		want                   string // "" when nobody else holds it
	}{
		{name: "inside a local node's CIDR", peer: "cluster2", prefix: "10.1.1.128/25", want: "cluster1"},
		{name: "around a local node's CIDR", peer: "cluster3", prefix: "10.0.0.0/8", want: "cluster1"},
		{name: "IPv4-mapped inside a local node's CIDR", peer: "cluster2", prefix: "::ffff:10.1.1.0/120", want: "cluster1"},
		{name: "next to a local node's CIDR", peer: "cluster2", prefix: "10.1.2.0/24"},
		{name: "inside another peer's recorded CIDRs", peer: "cluster2", prefix: "10.3.5.0/24", want: "cluster3"},
		{name: "IPv6 inside another peer's recorded CIDRs", peer: "cluster2", prefix: "fd00:3:0:1::/64", want: "cluster3"},
		{name: "two peers recorded it: the first by name", peer: "cluster2", prefix: "10.3.200.0/24", want: "cluster3"},
		{name: "the peer's own recorded CIDRs", peer: "cluster2", prefix: "10.2.1.0/24"},
		{name: "the peer's own, overlapping a misconfigured peer", peer: "cluster3", prefix: "10.3.1.0/24"},
		{name: "held by nobody", peer: "cluster2", prefix: "10.9.0.0/16"},
		{name: "the local cluster asks about itself", peer: "cluster1", prefix: "10.1.1.0/24"},

		{name: "a local node's address", peer: "cluster2", ip: "192.168.1.10", want: "cluster1"},
		{name: "a local node's address, IPv4-mapped", peer: "cluster2", ip: "::ffff:192.168.1.10", want: "cluster1"},
		{name: "another peer's accepted node", peer: "cluster2", ip: "192.168.3.10", want: "cluster3"},
		{name: "the peer's own node", peer: "cluster3", ip: "192.168.3.10"},
		{name: "an address of nobody", peer: "cluster2", ip: "192.168.9.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var owner string
			var found bool
			if tc.prefix != "" {
				owner, found = c.PodCIDROwner(tc.peer, netip.MustParsePrefix(tc.prefix))
			} else {
				owner, found = c.NodeIPOwner(tc.peer, netip.MustParseAddr(tc.ip))
			}
			if owner != tc.want || found != (tc.want != "") {
				t.Fatalf("owner = %q, %v; want %q", owner, found, tc.want)
			}
		})
	}
}

// The answers follow the state: nodes added, removed, drained.
func TestClaimsFollowTheState(t *testing.T) {
	c, st := newTestClaims(t)
	check := func(what string, got string, want string) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: owner %q, want %q", what, got, want)
		}
	}
	cidr := netip.MustParsePrefix("10.1.7.0/24")
	ip := netip.MustParseAddr("192.168.3.11")
	owner, _ := c.PodCIDROwner("cluster2", cidr)
	check("before the local node", owner, "")
	owner, _ = c.NodeIPOwner("cluster2", ip)
	check("before the peer's node", owner, "")

	update(t, st, func(w *state.WriteTxn) error {
		return w.UpsertNode("cluster1", claimNode("cluster1", "n7", "10.1.7.0/24", "192.168.1.17"))
	})
	update(t, st, func(w *state.WriteTxn) error {
		return w.UpsertNode("cluster3", claimNode("cluster3", "m2", "", "192.168.3.11"))
	})
	owner, _ = c.PodCIDROwner("cluster2", cidr)
	check("local node added", owner, "cluster1")
	owner, _ = c.NodeIPOwner("cluster2", ip)
	check("peer's node added", owner, "cluster3")

	update(t, st, func(w *state.WriteTxn) error { return w.DeleteNode("cluster1", "n7") })
	update(t, st, func(w *state.WriteTxn) error { return w.Drain("cluster3") })
	owner, _ = c.PodCIDROwner("cluster2", cidr)
	check("local node deleted", owner, "")
	owner, _ = c.NodeIPOwner("cluster2", ip)
	check("peer drained", owner, "")
	owner, _ = c.NodeIPOwner("cluster2", netip.MustParseAddr("192.168.1.10"))
	check("the other local node", owner, "cluster1")

	update(t, st, func(w *state.WriteTxn) error {
		return w.UpsertNode("cluster1", claimNode("cluster1", "n1", "10.1.1.0/24", "192.168.1.20"))
	})
	owner, _ = c.NodeIPOwner("cluster2", netip.MustParseAddr("192.168.1.10"))
	check("the local node's old address", owner, "")
	owner, _ = c.NodeIPOwner("cluster2", netip.MustParseAddr("192.168.1.20"))
	check("the local node's new address", owner, "cluster1")
}

// Peers ask from their own goroutines while the state changes.
func TestClaimsConcurrent(t *testing.T) {
	c, st := newTestClaims(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				if _, ok := c.PodCIDROwner("cluster2", netip.MustParsePrefix("10.1.1.0/24")); !ok {
					t.Error("the local node's CIDR lost")
					return
				}
				_, _ = c.NodeIPOwner("cluster2", netip.MustParseAddr(fmt.Sprintf("192.168.3.%d", j%250)))
				_ = i
			}
		})
	}
	wg.Go(func() {
		for j := range 200 {
			update(t, st, func(w *state.WriteTxn) error {
				return w.UpsertNode("cluster3", claimNode("cluster3", fmt.Sprintf("m%d", j), "", fmt.Sprintf("192.168.3.%d", j%250)))
			})
		}
	})
	wg.Wait()
}

// While the nodes do not change, an answer allocates nothing.
func TestClaimsAllocations(t *testing.T) {
	c, st := newTestClaims(t)
	p, ip := netip.MustParsePrefix("10.3.5.0/24"), netip.MustParseAddr("192.168.3.10")
	c.PodCIDROwner("cluster2", p) // index once
	c.NodeIPOwner("cluster2", ip)
	// Commits that touch no node do not index again.
	update(t, st, func(w *state.WriteTxn) error { return w.MarkInitialized("unrelated") })
	if n := testing.AllocsPerRun(100, func() {
		c.PodCIDROwner("cluster2", p)
		c.NodeIPOwner("cluster2", ip)
	}); n != 0 {
		t.Fatalf("%v allocations per call pair, want 0", n)
	}
}

// A WireGuard key held by a local node or another peer's node is claimed;
// a peer's own key is not claimed against it.
func TestClaimsWireGuardKeys(t *testing.T) {
	c, st := newTestClaims(t)
	local, other := claimNode("cluster1", "n9", "10.1.9.0/24", "192.168.1.19"), claimNode("cluster3", "m9", "10.3.9.0/24", "192.168.3.19")
	local.WireguardPubKey, other.WireguardPubKey = "key-of-cluster1-n9", "key-of-cluster3-m9"
	update(t, st, func(w *state.WriteTxn) error {
		if err := w.UpsertNode("cluster1", local); err != nil {
			return err
		}
		return w.UpsertNode("cluster3", other)
	})
	for _, tc := range []struct {
		peer, key, owner string
	}{
		{"cluster2", "key-of-cluster1-n9", "cluster1"},
		{"cluster2", "key-of-cluster3-m9", "cluster3"},
		{"cluster3", "key-of-cluster3-m9", ""},
		{"cluster2", "fresh-key", ""},
		{"cluster2", "", ""},
	} {
		owner, found := c.WireGuardKeyOwner(tc.peer, tc.key)
		if owner != tc.owner || found != (tc.owner != "") {
			t.Errorf("WireGuardKeyOwner(%s, %q) = %q, %v; want %q", tc.peer, tc.key, owner, found, tc.owner)
		}
	}
}
