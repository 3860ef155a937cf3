package remote

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The re-check index keeps single IPv4 addresses as bits of their /24's
// set and anything else as prefixes: each bucket lists exactly what was
// indexed in it, and an emptied bucket is gone.
func TestIPIndexBuckets(t *testing.T) {
	x := newIPIndex()
	in := []string{"10.1.2.0/32", "10.1.2.1/32", "10.1.2.63/32", "10.1.2.64/32", "10.1.2.255/32", "10.1.2.128/25",
		"10.1.0.0/16", "10.1.3.7/32", "fd00::1/128", "fd00::/120", "::ffff:10.1.2.9/128"}
	var ps []netip.Prefix
	for _, s := range in {
		p := netip.MustParsePrefix(s)
		ps = append(ps, p)
		x.indexLocked(p)
		x.indexLocked(p) // twice: still one member
	}
	members := func() map[netip.Prefix][]string {
		out := map[netip.Prefix][]string{}
		for b, k := range x.buckets {
			k.each(b, func(p netip.Prefix) { out[b] = append(out[b], p.String()) })
			slices.Sort(out[b])
		}
		return out
	}
	want := map[netip.Prefix][]string{
		netip.MustParsePrefix("10.1.2.0/24"): {"10.1.2.0/32", "10.1.2.1/32", "10.1.2.128/25", "10.1.2.255/32", "10.1.2.63/32", "10.1.2.64/32"},
		netip.MustParsePrefix("10.1.0.0/16"): {"10.1.0.0/16"},
		netip.MustParsePrefix("10.1.3.0/24"): {"10.1.3.7/32"},
		netip.MustParsePrefix("fd00::/64"):   {"fd00::/120", "fd00::1/128"},
		netip.MustParsePrefix("::/64"):       {"::ffff:10.1.2.9/128"}, // an IPv4-mapped address is IPv6: its /64
	}
	if diff := cmp.Diff(want, members()); diff != "" {
		t.Fatalf("buckets (-want +got):\n%s", diff)
	}
	if k := x.buckets[netip.MustParsePrefix("10.1.2.0/24")]; k.n4 != 5 {
		t.Fatalf("10.1.2.0/24 counts %d single addresses, want 5", k.n4)
	}
	x.unindexLocked(netip.MustParsePrefix("10.1.2.7/32")) // never indexed
	for _, p := range ps {
		x.unindexLocked(p)
	}
	if len(x.buckets) != 0 {
		t.Fatalf("buckets left after every entry was removed: %v", members())
	}
}
