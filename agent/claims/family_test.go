package claims

import (
	"net"
	"net/netip"
	"testing"

	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// A dual-stack local node claims its pod CIDRs and addresses of both
// families: a peer may claim neither its IPv4 nor its IPv6 pods or
// addresses, and its secondary CIDRs count too.
func TestClaimsDualStackLocalNode(t *testing.T) {
	c, st := newTestClaims(t)
	n := claimNode("cluster1", "n6", "10.1.6.0/24", "192.168.1.16")
	n.IPv6AllocCIDR = schema.NewCIDR(netip.MustParsePrefix("fd00:1:0:6::/64"))
	n.IPv6SecondaryAllocCIDRs = []*schema.CIDR{schema.NewCIDR(netip.MustParsePrefix("fd00:1:1:6::/64"))}
	n.IPAddresses = append(n.IPAddresses, schema.NodeAddress{Type: schema.AddressInternalIP, IP: net.ParseIP("2001:db8:1::16")})
	update(t, st, func(w *state.WriteTxn) error { return w.UpsertNode("cluster1", n) })
	for _, tc := range []struct {
		prefix, ip string
		want       string
	}{
		{prefix: "10.1.6.7/32", want: "cluster1"},
		{prefix: "fd00:1:0:6::7/128", want: "cluster1"},
		{prefix: "fd00:1:0:6:8000::/65", want: "cluster1"},
		{prefix: "fd00:1::/32", want: "cluster1"},
		{prefix: "fd00:1:1:6::7/128", want: "cluster1"},
		{prefix: "fd00:1:0:7::/64"},
		{ip: "192.168.1.16", want: "cluster1"},
		{ip: "2001:db8:1::16", want: "cluster1"},
		{ip: "2001:db8:1::17"},
	} {
		var owner string
		var found bool
		if tc.prefix != "" {
			owner, found = c.PodCIDROwner("cluster2", netip.MustParsePrefix(tc.prefix))
		} else {
			owner, found = c.NodeIPOwner("cluster2", netip.MustParseAddr(tc.ip))
		}
		if owner != tc.want || found != (tc.want != "") {
			t.Errorf("%s%s: owner %q, %v; want %q", tc.prefix, tc.ip, owner, found, tc.want)
		}
	}
}
