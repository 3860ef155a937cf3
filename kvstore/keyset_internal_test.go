package kvstore

import (
	"fmt"
	"maps"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
)

// The codecs pack exactly the keys they give back, and nothing else.
func TestKeyCodecs(t *testing.T) {
	for _, tc := range []struct {
		codec  KeyCodec
		packed []string
		not    []string
	}{
		{IPv4Keys{}, []string{"0.0.0.0", "10.0.0.1", "255.255.255.255", "192.168.1.20"},
			[]string{"", "010.0.0.1", "10.0.0.1/32", "10.0.0.0/24", "::1", "::ffff:10.0.0.1", "fd00::1", "10.0.0.1 ", "10.0.0", "k1", "1.2.3.4%eth0"}},
		{DecimalKeys{}, []string{"0", "1", "131073", "4294967295"},
			[]string{"", "-1", "+1", "01", "4294967296", "1e3", "0x10", "12a", " 1"}},
	} {
		s := newKeySet(tc.codec, 0)
		for _, k := range tc.packed {
			if _, ok := s.pack(k); !ok {
				t.Errorf("%T: %q not packed", tc.codec, k)
			}
		}
		for _, k := range tc.not {
			if _, ok := s.pack(k); ok {
				t.Errorf("%T: %q packed, but it does not come back as itself", tc.codec, k)
			}
		}
	}
}

// A key set with a codec behaves as a map from the keys to their
// revisions, whatever the keys (packable or not) and revisions (noRev,
// beyond 32 bits) and the order of the operations; a key is in one of its
// two maps, never both; sweep removes exactly the keys not seen and names
// them as they were set.
func TestKeySetAgainstMap(t *testing.T) {
	keys := []string{"10.0.0.1", "10.0.0.2", "010.0.0.2", "10.0.0.0/24", "fd00::1", "k00001", "0.0.0.0", "255.255.255.255", "10.0.0.01"}
	revs := []int64{noRev, 1, 2, 77, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64}
	for _, codec := range []KeyCodec{nil, IPv4Keys{}, DecimalKeys{}} {
		rng := rand.New(rand.NewPCG(1, 2))
		s, want := newKeySet(codec, 0), map[string]int64{}
		for i := range 5000 {
			k := keys[rng.IntN(len(keys))]
			switch rng.IntN(4) {
			case 0, 1:
				r := revs[rng.IntN(len(revs))]
				s.set(k, r)
				want[k] = r
			case 2:
				_, had := want[k]
				if got := s.del(k); got != had {
					t.Fatalf("%T op %d: del(%q) = %v, want %v", codec, i, k, got, had)
				}
				delete(want, k)
			case 3:
				seen := newKeySet(codec, 0)
				wantGone := map[string]bool{}
				for _, k := range keys {
					if rng.IntN(2) == 0 {
						seen.set(k, 1)
					} else if _, ok := want[k]; ok {
						wantGone[k] = true
					}
				}
				gone := map[string]bool{}
				s.sweep(seen, func(rel string) { gone[rel] = true })
				if !maps.Equal(gone, wantGone) {
					t.Fatalf("%T op %d: sweep removed %v, want %v", codec, i, gone, wantGone)
				}
				for k := range gone {
					delete(want, k)
				}
			}
			checkKeySet(t, s, want, keys)
		}
	}
}

func checkKeySet(t *testing.T, s *keySet, want map[string]int64, keys []string) {
	t.Helper()
	if s.len() != len(want) {
		t.Fatalf("len %d, want %d", s.len(), len(want))
	}
	for _, k := range keys {
		r, ok := s.get(k)
		wr, wok := want[k]
		if ok != wok || r != wr {
			t.Fatalf("get(%q) = %d, %v; want %d, %v", k, r, ok, wr, wok)
		}
	}
	var all []string
	s.each(func(rel string) { all = append(all, rel) })
	slices.Sort(all)
	if w := slices.Sorted(maps.Keys(want)); !slices.Equal(all, w) {
		t.Fatalf("each: %v, want %v", all, w)
	}
	n := 0
	for hi, b := range s.packed {
		if b.present == 0 || len(b.revs) != bits.OnesCount64(b.present) {
			t.Fatalf("block %d: present %b, %d revisions", hi, b.present, len(b.revs))
		}
		for m := b.present; m != 0; m &= m - 1 {
			n++
			if rel := s.unpack(hi<<6 | uint32(bits.TrailingZeros64(m))); true {
				if _, ok := s.other[rel]; ok {
					t.Fatalf("%s both packed and a string", rel)
				}
			}
		}
	}
	if n != s.npacked {
		t.Fatalf("%d packed keys counted, %d in the blocks", s.npacked, n)
	}
}

// A packed key with its revision holds a fraction of a string key's
// memory.
func TestKeySetPacksIPv4(t *testing.T) {
	s := newKeySet(IPv4Keys{}, 0)
	s.set("10.1.2.3", 5)
	s.set("fd00::1", 6)
	if s.npacked != 1 || len(s.other) != 1 {
		t.Fatalf("packed %v, other %v", s.packed, s.other)
	}
	s.set("10.1.2.3", math.MaxUint32+1) // beyond 32 bits: held as a string
	if s.npacked != 0 || len(s.packed) != 0 || s.other["10.1.2.3"] != math.MaxUint32+1 {
		t.Fatalf("packed %v, other %v", s.packed, s.other)
	}
	s.set("10.1.2.3", 7) // back
	if s.npacked != 1 || len(s.other) != 1 {
		t.Fatalf("packed %v, other %v", s.packed, s.other)
	}
}

// Keys that fill blocks and leave them, in any order, against a map:
// every address of a few blocks and their neighbours, revisions that fit
// in 32 bits and some that do not, sweeps of random halves.
func TestKeySetBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	s, want := newKeySet(IPv4Keys{}, 0), map[string]int64{}
	var keys []string
	for b := range 3 {
		for last := range 256 {
			keys = append(keys, fmt.Sprintf("10.0.%d.%d", b, last))
		}
	}
	for i := range 30000 {
		k := keys[rng.IntN(len(keys))]
		switch rng.IntN(10) {
		case 0, 1, 2, 3, 4:
			r := int64(1 + rng.IntN(1000))
			if rng.IntN(50) == 0 {
				r = math.MaxUint32 + int64(rng.IntN(3))
			}
			s.set(k, r)
			want[k] = r
		case 5, 6, 7, 8:
			_, had := want[k]
			if got := s.del(k); got != had {
				t.Fatalf("op %d: del(%q) = %v, want %v", i, k, got, had)
			}
			delete(want, k)
		case 9:
			if rng.IntN(20) != 0 {
				continue
			}
			seen := newKeySet(IPv4Keys{}, 0)
			for k := range want {
				if rng.IntN(2) == 0 {
					seen.set(k, 1)
				}
			}
			gone := map[string]bool{}
			s.sweep(seen, func(rel string) { gone[rel] = true })
			for k := range want {
				if _, ok := seen.get(k); ok == gone[k] {
					t.Fatalf("op %d: %q seen %v, swept %v", i, k, ok, gone[k])
				}
				if gone[k] {
					delete(want, k)
				}
			}
		}
		if i%500 == 0 || i > 29000 {
			checkKeySet(t, s, want, keys)
		}
	}
}
