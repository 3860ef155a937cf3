package remote

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"unique"
)

// The accepted and quarantined views of a v4Records behave as two
// disjoint maps keyed by address (set in one view moves the record from
// the other; del in one view leaves the other's record), whatever the
// order of the operations, with addresses spread over a few /24s and
// their whole last byte; an emptied /24 is released.
func TestV4RecordsAgainstMaps(t *testing.T) {
	v4 := newV4Records()
	views := [2]ipRecords{newIPRecords(v4, false), newIPRecords(v4, true)}
	want := [2]map[[4]byte]acceptedIP{{}, {}}
	rng := rand.New(rand.NewPCG(3, 4))
	addr := func() [4]byte {
		return [4]byte{10, 1, byte(rng.IntN(3)), []byte{0, 1, 63, 64, 127, 128, 200, 255}[rng.IntN(8)] ^ byte(rng.IntN(2))}
	}
	for i := range 20000 {
		a, q := addr(), rng.IntN(2)
		p := netip.PrefixFrom(netip.AddrFrom4(a), 32)
		switch rng.IntN(3) {
		case 0, 1:
			rec := acceptedIP{pod: "pod", ns: unique.Make("ns"), id: uint32(i), key: uint8(i)}
			views[q].set(p, rec)
			want[q][a] = rec
			delete(want[1-q], a)
		case 2:
			views[q].del(p)
			delete(want[q], a)
		}
		for q := range 2 {
			if got := views[q].len(); got != len(want[q]) {
				t.Fatalf("op %d: view %d has %d records, want %d", i, q, got, len(want[q]))
			}
			if i%64 != 0 { // the whole range now and then, the address every time
				got, ok := views[q].get(p)
				w, wok := want[q][a]
				if ok != wok || got != w {
					t.Fatalf("op %d: view %d get %v = %+v, %v; want %+v, %v", i, q, a, got, ok, w, wok)
				}
				continue
			}
			for b := range 3 {
				for last := range 256 {
					a := [4]byte{10, 1, byte(b), byte(last)}
					got, ok := views[q].get(netip.PrefixFrom(netip.AddrFrom4(a), 32))
					w, wok := want[q][a]
					if ok != wok || got != w {
						t.Fatalf("op %d: view %d get %v = %+v, %v; want %+v, %v", i, q, a, got, ok, w, wok)
					}
				}
			}
		}
	}
	for q := range 2 {
		for a := range want[q] {
			views[q].del(netip.PrefixFrom(netip.AddrFrom4(a), 32))
		}
	}
	if len(v4.blocks) != 0 || v4.n != [2]int{} {
		t.Fatalf("emptied records keep %d /24s, counts %v", len(v4.blocks), v4.n)
	}
}
