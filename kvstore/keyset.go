package kvstore

import (
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// KeyCodec gives the keys of a WatchStore's prefix that have one a
// compact form: a WatchStore holds one entry per key of its prefix, and a
// large peer has 100,000 ip entries, so that a key held as 4 bytes rather
// than a string (a 16-byte header and its bytes) matters.
//
// Pack returns the compact form of rel, a key without the store's prefix,
// and whether it has one; Append appends the key of a compact form to dst.
// A WatchStore packs a key only when Append gives back exactly rel (it
// checks), so a codec cannot make it report a key other than the one it
// was given.
type KeyCodec interface {
	Pack(rel string) (uint32, bool)
	Append(dst []byte, packed uint32) []byte
}

// IPv4Keys packs keys that are an IPv4 address in dotted-quad form
// ("10.0.0.1"), as the ip entries' keys of nearly every endpoint are.
type IPv4Keys struct{}

// Pack implements KeyCodec.
func (IPv4Keys) Pack(rel string) (uint32, bool) {
	a, err := netip.ParseAddr(rel)
	if err != nil || !a.Is4() {
		return 0, false
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), true
}

// Append implements KeyCodec.
func (IPv4Keys) Append(dst []byte, k uint32) []byte {
	return netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)}).AppendTo(dst)
}

// DecimalKeys packs keys that are a decimal number below 2^32, as the
// identities' keys ("<root>/state/identities/v1/id/<ID>") are.
type DecimalKeys struct{}

// Pack implements KeyCodec.
func (DecimalKeys) Pack(rel string) (uint32, bool) {
	n, err := strconv.ParseUint(rel, 10, 32)
	return uint32(n), err == nil
}

// Append implements KeyCodec.
func (DecimalKeys) Append(dst []byte, k uint32) []byte { return strconv.AppendUint(dst, uint64(k), 10) }

// keySet maps the keys a WatchStore reported (without its prefix) to
// their mod revision. A key its codec packs, with a revision below 2^32,
// is held as 4 bytes and a 4-byte revision (about 14 bytes a key in a
// Go map, where a string key and an int64 take about 60); any other key
// as a string. A key is in one of the two maps, never both.
//
// The revision noRev (-1) is never a real one: an adopted key has it, so
// that it is reported again whatever revision it has now.
type keySet struct {
	codec  KeyCodec // nil: every key is a string
	packed map[uint32]uint32
	other  map[string]int64
	buf    []byte // Append's scratch
}

const noRev = -1

func newKeySet(codec KeyCodec, size int) *keySet {
	s := &keySet{codec: codec, other: map[string]int64{}}
	if codec != nil {
		s.packed = make(map[uint32]uint32, size)
	} else if size > 0 {
		s.other = make(map[string]int64, size)
	}
	return s
}

// pack returns rel's compact form when the codec has one that gives rel
// back exactly.
func (s *keySet) pack(rel string) (uint32, bool) {
	if s.codec == nil {
		return 0, false
	}
	k, ok := s.codec.Pack(rel)
	if !ok {
		return 0, false
	}
	s.buf = s.codec.Append(s.buf[:0], k)
	return k, string(s.buf) == rel
}

// unpack returns the key of a compact form.
func (s *keySet) unpack(k uint32) string {
	s.buf = s.codec.Append(s.buf[:0], k)
	return string(s.buf)
}

// Packed revisions: 0 stands for noRev (etcd's revisions start at 1).
func packRev(rev int64) (uint32, bool) {
	switch {
	case rev == noRev:
		return 0, true
	case rev > 0 && rev <= math.MaxUint32:
		return uint32(rev), true
	}
	return 0, false
}

func unpackRev(r uint32) int64 {
	if r == 0 {
		return noRev
	}
	return int64(r)
}

func (s *keySet) len() int { return len(s.packed) + len(s.other) }

// get returns rel's revision and whether rel is in the set.
func (s *keySet) get(rel string) (int64, bool) {
	if k, ok := s.pack(rel); ok {
		if r, ok := s.packed[k]; ok {
			return unpackRev(r), true
		}
	}
	rev, ok := s.other[rel] // a packable key with a revision of 2^32 or more
	return rev, ok
}

// set records rel at rev. rel is copied when it becomes a string key, so
// that the set does not hold the larger string it may be part of.
func (s *keySet) set(rel string, rev int64) {
	if k, ok := s.pack(rel); ok {
		if r, ok := packRev(rev); ok {
			s.packed[k] = r
			delete(s.other, rel)
			return
		}
		delete(s.packed, k)
	}
	// Always a copy: assigning to a string key replaces the key too.
	s.other[strings.Clone(rel)] = rev
}

// del removes rel and reports whether it was in the set.
func (s *keySet) del(rel string) bool {
	if k, ok := s.pack(rel); ok {
		if _, ok := s.packed[k]; ok {
			delete(s.packed, k)
			return true
		}
	}
	_, ok := s.other[rel]
	delete(s.other, rel)
	return ok
}

// sweep removes every key of s that is not in seen, a set of the same
// codec (so that a key s packs is packed in seen too), calling f for each.
func (s *keySet) sweep(seen *keySet, f func(rel string)) {
	for k := range s.packed {
		if _, ok := seen.packed[k]; !ok {
			delete(s.packed, k)
			f(s.unpack(k))
		}
	}
	for rel := range s.other {
		if _, ok := seen.get(rel); !ok {
			delete(s.other, rel)
			f(rel)
		}
	}
}

// each calls f for every key of s.
func (s *keySet) each(f func(rel string)) {
	for k := range s.packed {
		f(s.unpack(k))
	}
	for rel := range s.other {
		f(rel)
	}
}
