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
	// entries are sorted by last, without duplicates.
	entries []hostEntry
	// owner is the transaction that created the row and may still modify
	// it; nil once that transaction committed.
	owner *WriteTxn
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

// find returns the index of the entry of last, or where it would go.
func (b *ipBlock) find(last byte) (int, bool) {
	return slices.BinarySearchFunc(b.entries, last, func(e hostEntry, l byte) int { return cmp.Compare(e.last, l) })
}

// row returns entry i as an ipcache row.
func (b *ipBlock) row(i int) IPCacheRow {
	e := &b.entries[i]
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
// block at base when b is nil) inserted in its place.
func (w *WriteTxn) writableBlock(b *ipBlock, base netip.Addr) (*ipBlock, error) {
	if b != nil && b.owner == w {
		return b, nil
	}
	nb := &ipBlock{base: base, owner: w}
	if b != nil {
		nb.entries = make([]hostEntry, len(b.entries), len(b.entries)+1)
		copy(nb.entries, b.entries)
	}
	if err := w.insert(TableIPCache, nb); err != nil {
		return nil, err
	}
	w.blocks = append(w.blocks, nb)
	return nb, nil
}

// upsertHost is UpsertIP for a host prefix (masked, unmapped).
func (w *WriteTxn) upsertHost(e *IPCacheRow) error {
	base, last := splitHost(e.Prefix.Addr())
	b, err := first[ipBlock](w.txn, TableIPCache, IndexID, e.Prefix)
	if err != nil {
		return err
	}
	he := newHostEntry(e, last)
	i, found := 0, false
	if b != nil {
		if i, found = b.find(last); found && b.entries[i] == he {
			return nil
		}
	}
	nb, err := w.writableBlock(b, base)
	if err != nil {
		return err
	}
	w.changed = true
	if found {
		nb.entries[i] = he
	} else {
		nb.entries = slices.Insert(nb.entries, i, he)
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
	i, found := b.find(last)
	if !found || b.entries[i].cluster.Value() != cluster {
		return nil
	}
	if len(b.entries) == 1 {
		if err := w.delete(TableIPCache, b); err != nil {
			return err
		}
		return w.dropPrefixLen(p.Addr().Is6(), uint8(p.Bits()))
	}
	nb, err := w.writableBlock(b, b.base)
	if err != nil {
		return err
	}
	nb.entries = slices.Delete(nb.entries, i, i+1)
	return nil
}

// drainBlock removes the entries of cluster from b, and reports whether
// the block is gone.
func (w *WriteTxn) drainBlock(b *ipBlock, cluster string) (bool, error) {
	c := unique.Make(cluster)
	keep := 0
	for _, e := range b.entries {
		if e.cluster != c {
			keep++
		}
	}
	switch keep {
	case len(b.entries):
		return false, nil
	case 0:
		return true, w.delete(TableIPCache, b)
	}
	nb, err := w.writableBlock(b, b.base)
	if err != nil {
		return false, err
	}
	nb.entries = slices.DeleteFunc(nb.entries, func(e hostEntry) bool { return e.cluster == c })
	return false, nil
}

// seal makes the blocks this transaction modified immutable, before the
// commit publishes them, and gives back the spare capacity of their
// entries.
func (w *WriteTxn) seal() {
	for _, b := range w.blocks {
		b.owner = nil
		if n := len(b.entries); cap(b.entries)-n > 2+n/16 {
			b.entries = slices.Clone(b.entries)
		}
	}
	w.blocks = nil
}
