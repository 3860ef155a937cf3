package kvstore

import (
	"maps"
	"math"
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
	for k := range s.packed {
		if _, ok := s.other[s.unpack(k)]; ok {
			t.Fatalf("%s in both maps", s.unpack(k))
		}
	}
}

// A packed key with its revision holds a fraction of a string key's
// memory.
func TestKeySetPacksIPv4(t *testing.T) {
	s := newKeySet(IPv4Keys{}, 0)
	s.set("10.1.2.3", 5)
	s.set("fd00::1", 6)
	if len(s.packed) != 1 || len(s.other) != 1 {
		t.Fatalf("packed %v, other %v", s.packed, s.other)
	}
	s.set("10.1.2.3", math.MaxUint32+1) // beyond 32 bits: held as a string
	if len(s.packed) != 0 || s.other["10.1.2.3"] != math.MaxUint32+1 {
		t.Fatalf("packed %v, other %v", s.packed, s.other)
	}
	s.set("10.1.2.3", 7) // back
	if len(s.packed) != 1 || len(s.other) != 1 {
		t.Fatalf("packed %v, other %v", s.packed, s.other)
	}
}
