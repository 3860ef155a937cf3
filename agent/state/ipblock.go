package state

import (
	"cmp"
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
	// chunks hold the entries by last>>chunkShift; nil when empty. A
	// transaction copies only the chunk it changes (and this array): with
	// one slice per block, every change of one entry copied 256 of them
	// (16 KB, mostly cold in the cache at 100k entries), which made a
	// change 1.4-2 times slower with 100k entries than with 1k.
	chunks [chunksPerBlock]*hostChunk
	// n is the number of entries.
	n int
	// owner is the transaction that created the row and may still modify
	// it; nil once that transaction committed.
	owner *WriteTxn
}

const (
	chunkShift     = 5
	chunksPerBlock = 256 >> chunkShift
)

// hostChunk is the entries of one chunk of a block, under the same
// copy-on-write rule as the block.
type hostChunk struct {
	// entries are sorted by last, without duplicates, never empty.
	entries []hostEntry
	owner   *WriteTxn
}

// hostEntry is one host entry of a block: an IPCacheRow without its
// prefix, and with its repeated strings interned.
type hostEntry struct {
	hostIP    netip.Addr
	pod       string
	cluster   unique.Handle[string]
	namespace unique.Handle[string]
	id        identity.NumericIdentity
	last      byte
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

func newHostEntry(e *IPCacheRow, last byte) hostEntry {
	return hostEntry{hostIP: e.HostIP, pod: e.Pod, cluster: unique.Make(e.Cluster),
		namespace: unique.Make(e.Namespace), id: e.ID, last: last}
}

// find returns the entry of last, if any.
func (b *ipBlock) find(last byte) (*hostEntry, bool) {
	c := b.chunks[last>>chunkShift]
	if c == nil {
		return nil, false
	}
	if i, ok := c.find(last); ok {
		return &c.entries[i], true
	}
	return nil, false
}

// find returns the index of the entry of last, or where it would go.
func (c *hostChunk) find(last byte) (int, bool) {
	return slices.BinarySearchFunc(c.entries, last, func(e hostEntry, l byte) int { return cmp.Compare(e.last, l) })
}

// each calls f with every entry, in the order of their addresses.
func (b *ipBlock) each(f func(e *hostEntry)) {
	for _, c := range b.chunks {
		if c == nil {
			continue
		}
		for i := range c.entries {
			f(&c.entries[i])
		}
	}
}

// row returns e, an entry of b, as an ipcache row.
func (b *ipBlock) row(e *hostEntry) IPCacheRow {
	return IPCacheRow{Prefix: b.hostPrefix(e.last), Cluster: e.cluster.Value(), ID: e.id,
		HostIP: e.hostIP, Namespace: e.namespace.Value(), Pod: e.pod}
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
	nb.owner = w
	if err := w.insert(TableIPCache, nb); err != nil {
		return nil, err
	}
	w.blocks = append(w.blocks, nb)
	return nb, nil
}

// writableChunk returns chunk ci of b (a block the transaction may modify)
// for the transaction to modify in place, copied unless the transaction
// created it.
func (w *WriteTxn) writableChunk(b *ipBlock, ci byte) *hostChunk {
	c := b.chunks[ci]
	if c != nil && c.owner == w {
		return c
	}
	nc := &hostChunk{owner: w}
	if c != nil {
		nc.entries = make([]hostEntry, len(c.entries), len(c.entries)+1)
		copy(nc.entries, c.entries)
	}
	b.chunks[ci] = nc
	return nc
}

// upsertHost is UpsertIP for a host prefix (masked, unmapped).
func (w *WriteTxn) upsertHost(e *IPCacheRow) error {
	base, last := splitHost(e.Prefix.Addr())
	b, err := first[ipBlock](w.txn, TableIPCache, IndexID, e.Prefix)
	if err != nil {
		return err
	}
	he := newHostEntry(e, last)
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
	c := w.writableChunk(nb, last>>chunkShift)
	if i, found := c.find(last); found {
		c.entries[i] = he
	} else {
		c.entries = slices.Insert(c.entries, i, he)
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
	if !found || old.cluster.Value() != cluster {
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
	ci := last >> chunkShift
	c := w.writableChunk(nb, ci)
	i, _ := c.find(last)
	c.entries = slices.Delete(c.entries, i, i+1)
	if len(c.entries) == 0 {
		nb.chunks[ci] = nil
	}
	nb.n--
	return nil
}

// drainBlock removes the entries of cluster from b, and reports whether
// the block is gone.
func (w *WriteTxn) drainBlock(b *ipBlock, cluster string) (bool, error) {
	cl := unique.Make(cluster)
	drop := map[byte]int{} // chunk -> entries of cluster
	total := 0
	for ci, c := range b.chunks {
		if c == nil {
			continue
		}
		for _, e := range c.entries {
			if e.cluster == cl {
				drop[byte(ci)]++
				total++
			}
		}
	}
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
	for ci := range drop {
		c := w.writableChunk(nb, ci)
		c.entries = slices.DeleteFunc(c.entries, func(e hostEntry) bool { return e.cluster == cl })
		if len(c.entries) == 0 {
			nb.chunks[ci] = nil
		}
	}
	nb.n -= total
	return false, nil
}

// seal makes the blocks (and chunks) this transaction modified immutable,
// before the commit publishes them, and gives back the spare capacity of
// their entries.
func (w *WriteTxn) seal() {
	for _, b := range w.blocks {
		b.owner = nil
		for _, c := range b.chunks {
			if c == nil || c.owner != w {
				continue
			}
			c.owner = nil
			if n := len(c.entries); cap(c.entries)-n > 2+n/16 {
				c.entries = slices.Clone(c.entries)
			}
		}
	}
	w.blocks = nil
}
