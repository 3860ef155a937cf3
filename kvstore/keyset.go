package kvstore

import (
	"math"
	"math/bits"
	"net/netip"
	"slices"
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
// is held as a bit and a 4-byte revision in a block of 64 packed keys
// (revBlocks: a peer's ip entries are dense in its nodes' pod CIDRs, its
// identities in its range; about 5 bytes a key in a dense block, where a
// string key and an int64 in a Go map take about 60); any other key as a
// string. A key is in one of the two, never both.
//
// The revision noRev (-1) is never a real one: an adopted key has it, so
// that it is reported again whatever revision it has now.
type keySet struct {
	codec   KeyCodec // nil: every key is a string
	packed  map[uint32]*revBlock
	npacked int
	other   map[string]int64
	buf     []byte // Append's scratch
}

// revBlock holds the revisions of the packed keys k>>6 == its key in
// the set: a bit per key present, the revisions in the order of the keys
// (a revision's index is the number of bits below its key's).
type revBlock struct {
	present uint64
	revs    []uint32
}

func (b *revBlock) slot(k uint32) (uint64, int) {
	bit := uint64(1) << (k & 63)
	return bit, bits.OnesCount64(b.present & (bit - 1))
}

const noRev = -1

func newKeySet(codec KeyCodec, size int) *keySet {
	s := &keySet{codec: codec, other: map[string]int64{}}
	if codec != nil {
		s.packed = map[uint32]*revBlock{}
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

func (s *keySet) len() int { return s.npacked + len(s.other) }

// getPacked returns the packed revision of k.
func (s *keySet) getPacked(k uint32) (uint32, bool) {
	b := s.packed[k>>6]
	if b == nil {
		return 0, false
	}
	bit, i := b.slot(k)
	if b.present&bit == 0 {
		return 0, false
	}
	return b.revs[i], true
}

// setPacked records the packed revision r of k.
func (s *keySet) setPacked(k, r uint32) {
	b := s.packed[k>>6]
	if b == nil {
		b = &revBlock{}
		s.packed[k>>6] = b
	}
	bit, i := b.slot(k)
	if b.present&bit != 0 {
		b.revs[i] = r
		return
	}
	if len(b.revs) == cap(b.revs) {
		// Grow by a quarter rather than double, up to the block's 64:
		// the slack is per key.
		grown := make([]uint32, len(b.revs), min(len(b.revs)+len(b.revs)/4+2, 64))
		copy(grown, b.revs)
		b.revs = grown
	}
	b.revs = slices.Insert(b.revs, i, r)
	b.present |= bit
	s.npacked++
}

// delPacked removes k and reports whether it was there.
func (s *keySet) delPacked(k uint32) bool {
	b := s.packed[k>>6]
	if b == nil {
		return false
	}
	bit, i := b.slot(k)
	if b.present&bit == 0 {
		return false
	}
	b.revs = slices.Delete(b.revs, i, i+1)
	b.present &^= bit
	s.npacked--
	switch {
	case b.present == 0:
		delete(s.packed, k>>6)
	case cap(b.revs) > 2*len(b.revs)+4: // give back what keys left
		b.revs = slices.Clip(slices.Clone(b.revs))
	}
	return true
}

// get returns rel's revision and whether rel is in the set.
func (s *keySet) get(rel string) (int64, bool) {
	if k, ok := s.pack(rel); ok {
		if r, ok := s.getPacked(k); ok {
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
			s.setPacked(k, r)
			delete(s.other, rel)
			return
		}
		s.delPacked(k)
	}
	// Always a copy: assigning to a string key replaces the key too.
	s.other[strings.Clone(rel)] = rev
}

// del removes rel and reports whether it was in the set.
func (s *keySet) del(rel string) bool {
	if k, ok := s.pack(rel); ok {
		if s.delPacked(k) {
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
	for hi, b := range s.packed {
		var gone uint64
		if sb := seen.packed[hi]; sb != nil {
			gone = b.present &^ sb.present
		} else {
			gone = b.present
		}
		for ; gone != 0; gone &= gone - 1 {
			k := hi<<6 | uint32(bits.TrailingZeros64(gone))
			s.delPacked(k)
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
	for hi, b := range s.packed {
		for m := b.present; m != 0; m &= m - 1 {
			f(s.unpack(hi<<6 | uint32(bits.TrailingZeros64(m))))
		}
	}
	for rel := range s.other {
		f(rel)
	}
}
