//go:build linux

package bed

import (
	"fmt"
	"net/netip"
	"testing"
)

// The IPv4 plan is that of an IPv4-only bed whatever the option; a
// dual-stack bed adds an IPv6 address or CIDR of the same numbering, an
// IPv6-only bed has only those; the CNI chain gets a range and a default
// route per family.
func TestAddressPlan(t *testing.T) {
	for _, fam := range []AddrFamily{FamilyIPv4, FamilyDualStack, FamilyIPv6} {
		t.Run(fam.String(), func(t *testing.T) {
			addrs := nodeAddrs(2, 1, fam)
			cidrs := nodePodCIDRs(2, 1, fam)
			cluster := clusterPodCIDRs(2, fam)
			var want, wantCIDRs, wantCluster, lans []string
			if fam.has4() {
				want = append(want, "192.168.100.22")
				wantCIDRs = append(wantCIDRs, "10.2.2.0/24")
				wantCluster = append(wantCluster, "10.2.0.0/16")
				lans = append(lans, underlay.String())
			}
			if fam.has6() {
				want = append(want, "fd00:cb::16")
				wantCIDRs = append(wantCIDRs, "fd00:10:2:2::/64")
				wantCluster = append(wantCluster, "fd00:10:2::/48")
				lans = append(lans, underlay6.String())
			}
			if got := fmt.Sprint(addrs); got != fmt.Sprint(want) {
				t.Errorf("node addresses %s, want %v", got, want)
			}
			if got := fmt.Sprint(cidrs); got != fmt.Sprint(wantCIDRs) {
				t.Errorf("node pod CIDRs %s, want %v", got, wantCIDRs)
			}
			if got := fmt.Sprint(cluster); got != fmt.Sprint(wantCluster) {
				t.Errorf("cluster pod CIDRs %s, want %v", got, wantCluster)
			}
			for i, a := range addrs {
				if u := netip.MustParsePrefix(lans[i]); !u.Contains(a) {
					t.Errorf("%v is outside the underlay %v", a, u)
				}
			}
			for i, c := range cidrs {
				if !cluster[i].Contains(c.Addr()) || c.Bits() < cluster[i].Bits() {
					t.Errorf("node pod CIDR %v is outside the cluster's %v", c, cluster[i])
				}
			}
			// Nodes and clusters never share an address or overlap.
			seen := map[netip.Addr]string{}
			for id := uint32(1); id <= 9; id++ {
				for i := range 9 {
					for _, a := range nodeAddrs(id, i, fam) {
						if o, ok := seen[a]; ok {
							t.Fatalf("%v is the address of cluster %d node %d and of %s", a, id, i, o)
						}
						seen[a] = fmt.Sprintf("cluster %d node %d", id, i)
					}
				}
				for other := id + 1; other <= 9; other++ {
					for _, o := range clusterPodCIDRs(other, fam) {
						for _, c := range clusterPodCIDRs(id, fam) {
							if c.Overlaps(o) {
								t.Fatalf("pod CIDRs %v (cluster %d) and %v (cluster %d) overlap", c, id, o, other)
							}
						}
					}
				}
			}
			ranges, routes := hostLocal(cidrs)
			want2 := map[AddrFamily][2]string{
				FamilyIPv4:      {`[[{"subnet":"10.2.2.0/24"}]]`, `[{"dst":"0.0.0.0/0"}]`},
				FamilyDualStack: {`[[{"subnet":"10.2.2.0/24"}],[{"subnet":"fd00:10:2:2::/64"}]]`, `[{"dst":"0.0.0.0/0"},{"dst":"::/0"}]`},
				FamilyIPv6:      {`[[{"subnet":"fd00:10:2:2::/64"}]]`, `[{"dst":"::/0"}]`},
			}[fam]
			wantRanges, wantRoutes := want2[0], want2[1]
			if ranges != wantRanges || routes != wantRoutes {
				t.Errorf("host-local ranges %s routes %s, want %s and %s", ranges, routes, wantRanges, wantRoutes)
			}
		})
	}
	if p := prefixOf(netip.MustParseAddr("fd00:10:1:1::2")); p.String() != "fd00:10:1:1::2/128" {
		t.Errorf("prefixOf: %v", p)
	}
	d := Drop{Src: "[fd00:10:1:1::3]:40000", Dst: "[fd00:10:2:1::2]:80"}
	if !sameDrop(d, "fd00:10:1:1::3", "[fd00:10:2:1:0::2]:80") || sameDrop(d, "fd00:10:1:1::4", "[fd00:10:2:1::2]:80") {
		t.Errorf("sameDrop over IPv6")
	}
	if d := (Drop{Src: "10.1.1.3:40000", Dst: "10.2.1.2:80"}); !sameDrop(d, "10.1.1.3", "10.2.1.2:80") || sameDrop(d, "10.1.1.30", "10.2.1.2:80") {
		t.Errorf("sameDrop over IPv4")
	}
}
