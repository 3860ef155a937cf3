package state

import (
	"math/bits"
	"net/netip"
	"slices"
	"unique"

	"github.com/clustermesh/clustermesh/identity"
)

// Host entries (/32, /128) are not one ipcache row each: they are grouped
// in ipBlock rows, one per block of addresses that differ only in their
// last byte (an IPv4 /24, an IPv6 /120). Every memdb row costs about 400
// bytes of radix tree (each node and leaf has its own watch channel), four
// times what an entry needs; with blocks that cost is paid per block. A
// block is found by the same primary index as a row (prefixIndex maps a
// host prefix to its block's key), so the family-and-length prefix seeks
// still see host entries. A block never is empty: the last entry's delete
// deletes the row.
//
// Blocks follow the table's copy-on-write rule with one exception: a block
// row created by the current WriteTxn is not visible to any reader until
// the commit, so that transaction changes it in place instead of copying
// it for every entry. WriteTxn.seal ends that before the commit.
type ipBlock struct {
	// base is the block's first address (last byte zero), unmapped.
	base netip.Addr
	// present has a bit per address of the block: bit last%32 of
	// present[last/32]. It locates an entry without a search (its index
	// in its chunk is the number of bits below its own) and without
	// reading the entries, which at 100k entries are mostly cold in the
	// cache.
	present [chunksPerBlock]uint32
	// chunks hold the entries by last>>chunkShift, in the order of their
	// addresses; nil when empty. A transaction copies only the chunk it
	// changes (and the block): with one slice per block, every change of
	// one entry copied 256 of them (16 KB, mostly cold in the cache at
	// 100k entries), which made a change 1.4-2 times slower with 100k
	// entries than with 1k.
	chunks [chunksPerBlock][]hostEntry
	// n is the number of entries.
	n int
	// owner is the transaction that created the row and may still modify
	// it; nil once that transaction committed. owned has a bit per chunk
	// the owner created (and may modify in place).
	owner *WriteTxn
	owned uint8
}

const (
	chunkShift     = 5
	chunksPerBlock = 256 >> chunkShift
)

// hostEntry is one host entry of a block: an IPCacheRow without its
// prefix (the block's base and the entry's bit in present), its cluster
// and host interned together, its namespace interned. 40 bytes: a chunk
// of 32 is 1.25 KB.
type hostEntry struct {
	origin    unique.Handle[hostOrigin]
	namespace unique.Handle[string]
	pod       string
	id        identity.NumericIdentity
}

// hostOrigin is where a host entry comes from: few distinct values (one
// per node of each cluster).
type hostOrigin struct {
	cluster string
	hostIP  netip.Addr
}

// isHostPrefix reports whether p (masked, unmapped) is a single address.
func isHostPrefix(p netip.Prefix) bool { return p.Bits() == p.Addr().BitLen() }

// splitHost returns the block base and the last byte of addr.
func splitHost(addr netip.Addr) (netip.Addr, byte) {
	if addr.Is4() {
		b := addr.As4()
		last := b[3]
		b[3] = 0
		return netip.AddrFrom4(b), last
	}
	b := addr.As16()
	last := b[15]
	b[15] = 0
	return netip.AddrFrom16(b), last
}

// blockKey is the primary index key of the block at base: the family, the
// host length, then the nibbles of every byte but the last. It sorts like
// the keys of the host prefixes it holds (prefixKey) would.
func blockKey(base netip.Addr) []byte {
	raw := base.As16()
	addr := raw[:15]
	if base.Is4() {
		addr = raw[12:15]
	}
	key := make([]byte, 2, 2+2*len(addr))
	key[0], key[1] = familyByte(base.Is6()), byte(base.BitLen())
	for _, b := range addr {
		key = append(key, b>>4, b&0xf)
	}
	return key
}

func newHostEntry(e *IPCacheRow) hostEntry {
	return hostEntry{origin: unique.Make(hostOrigin{cluster: e.Cluster, hostIP: e.HostIP}),
		namespace: unique.Make(e.Namespace), pod: e.Pod, id: e.ID}
}

// cluster is the cluster the entry comes from.
func (e *hostEntry) cluster() string { return e.origin.Value().cluster }

// slot returns the chunk of last, its bit in present[ci], and the index
// its entry has (or would have) in the chunk.
func (b *ipBlock) slot(last byte) (ci byte, bit uint32, i int) {
	ci, bit = last>>chunkShift, 1<<(last&(1<<chunkShift-1))
	return ci, bit, bits.OnesCount32(b.present[ci] & (bit - 1))
}

// find returns the entry of last, if any.
func (b *ipBlock) find(last byte) (*hostEntry, bool) {
	ci, bit, i := b.slot(last)
	if b.present[ci]&bit == 0 {
		return nil, false
	}
	return &b.chunks[ci][i], true
}

// each calls f with every entry and its last byte, in the order of their
// addresses.
func (b *ipBlock) each(f func(last byte, e *hostEntry)) {
	for ci, c := range b.chunks {
		i := 0
		for m := b.present[ci]; m != 0; m &= m - 1 {
			f(byte(ci<<chunkShift|bits.TrailingZeros32(m)), &c[i])
			i++
		}
	}
}

// row returns e, the entry of b at last, as an ipcache row.
func (b *ipBlock) row(last byte, e *hostEntry) IPCacheRow {
	o := e.origin.Value()
	return IPCacheRow{Prefix: b.hostPrefix(last), Cluster: o.cluster, ID: e.id,
		HostIP: o.hostIP, Namespace: e.namespace.Value(), Pod: e.pod}
}

// hostPrefix returns the host prefix of the block's address ending in last.
func (b *ipBlock) hostPrefix(last byte) netip.Prefix {
	var addr netip.Addr
	if b.base.Is4() {
		a := b.base.As4()
		a[3] = last
		addr = netip.AddrFrom4(a)
	} else {
		a := b.base.As16()
		a[15] = last
		addr = netip.AddrFrom16(a)
	}
	return netip.PrefixFrom(addr, addr.BitLen())
}

// writableBlock returns a block the transaction may modify in place: b
// itself if the transaction created it, else a copy of b (or a new empty
// block at base when b is nil) inserted in its place. The copy shares b's
// chunks: modify one through writableChunk.
func (w *WriteTxn) writableBlock(b *ipBlock, base netip.Addr) (*ipBlock, error) {
	if b != nil && b.owner == w {
		return b, nil
	}
	nb := &ipBlock{base: base}
	if b != nil {
		*nb = *b
	}
	nb.owner, nb.owned = w, 0
	if err := w.insert(TableIPCache, nb); err != nil {
		return nil, err
	}
	w.blocks = append(w.blocks, nb)
	return nb, nil
}

// writableChunk returns chunk ci of b (a block the transaction may
// modify) for the transaction to modify in place, copied (with room for
// one more entry) unless the transaction created it.
func (w *WriteTxn) writableChunk(b *ipBlock, ci byte) []hostEntry {
	c := b.chunks[ci]
	if b.owned&(1<<ci) != 0 {
		return c
	}
	nc := make([]hostEntry, len(c), len(c)+1)
	copy(nc, c)
	b.chunks[ci], b.owned = nc, b.owned|1<<ci
	return nc
}

// upsertHost is UpsertIP for a host prefix (masked, unmapped).
func (w *WriteTxn) upsertHost(e *IPCacheRow) error {
	base, last := splitHost(e.Prefix.Addr())
	b, err := first[ipBlock](w.txn, TableIPCache, IndexID, e.Prefix)
	if err != nil {
		return err
	}
	he := newHostEntry(e)
	if b != nil {
		if old, found := b.find(last); found && *old == he {
			return nil
		}
	}
	nb, err := w.writableBlock(b, base)
	if err != nil {
		return err
	}
	w.changed = true
	ci, bit, i := nb.slot(last)
	c := w.writableChunk(nb, ci)
	if nb.present[ci]&bit != 0 {
		c[i] = he
	} else {
		nb.chunks[ci] = slices.Insert(c, i, he)
		nb.present[ci] |= bit
		nb.n++
	}
	if b != nil {
		return nil
	}
	return w.addPrefixLen(e.Prefix)
}

// deleteHost is DeleteIP for a host prefix (masked, unmapped).
func (w *WriteTxn) deleteHost(cluster string, p netip.Prefix) error {
	_, last := splitHost(p.Addr())
	b, err := first[ipBlock](w.txn, TableIPCache, IndexID, p)
	if err != nil || b == nil {
		return err
	}
	old, found := b.find(last)
	if !found || old.cluster() != cluster {
		return nil
	}
	if b.n == 1 {
		if err := w.delete(TableIPCache, b); err != nil {
			return err
		}
		return w.dropPrefixLen(p.Addr().Is6(), uint8(p.Bits()))
	}
	nb, err := w.writableBlock(b, b.base)
	if err != nil {
		return err
	}
	ci, bit, i := nb.slot(last)
	nb.chunks[ci] = slices.Delete(w.writableChunk(nb, ci), i, i+1)
	nb.present[ci] &^= bit
	if nb.present[ci] == 0 {
		nb.chunks[ci] = nil
	}
	nb.n--
	return nil
}

// drainBlock removes the entries of cluster from b, and reports whether
// the block is gone.
func (w *WriteTxn) drainBlock(b *ipBlock, cluster string) (bool, error) {
	var drop [chunksPerBlock]uint32 // the bits of cluster's entries
	total := 0
	b.each(func(last byte, e *hostEntry) {
		if e.cluster() == cluster {
			drop[last>>chunkShift] |= 1 << (last & (1<<chunkShift - 1))
			total++
		}
	})
	switch total {
	case 0:
		return false, nil
	case b.n:
		return true, w.delete(TableIPCache, b)
	}
	nb, err := w.writableBlock(b, b.base)
	if err != nil {
		return false, err
	}
	for ci, d := range drop {
		if d == 0 {
			continue
		}
		var kept []hostEntry
		i := 0
		for m := nb.present[ci]; m != 0; m &= m - 1 {
			if d&(m&-m) == 0 {
				kept = append(kept, nb.chunks[ci][i])
			}
			i++
		}
		nb.chunks[ci], nb.present[ci] = kept, nb.present[ci]&^d
		nb.owned |= 1 << ci
	}
	nb.n -= total
	return false, nil
}

// seal makes the blocks (and chunks) this transaction modified immutable,
// before the commit publishes them, and gives back the spare capacity of
// their entries.
func (w *WriteTxn) seal() {
	for _, b := range w.blocks {
		for ci, c := range b.chunks {
			if b.owned&(1<<ci) == 0 {
				continue
			}
			if n := len(c); cap(c)-n > 2+n/16 {
				b.chunks[ci] = slices.Clone(c)
			}
		}
		b.owner, b.owned = nil, 0
	}
	w.blocks = nil
}
