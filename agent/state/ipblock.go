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
// last two bytes (an IPv4 /16, an IPv6 /112). Every memdb row costs about
// 400 bytes of radix tree (each node and leaf has its own watch channel),
// four times what an entry needs; with blocks that cost is paid per block.
// And every write copies the radix tree's path to its row, whose length
// grows with the number of rows: with a row per /24, one entry's change
// copied two more levels with 100k entries (391 blocks) than with 1k (4),
// the cold half of the path, which made a change 1.3 times slower. With a
// row per /16, 100k entries of one cluster are a few rows, and the levels
// below are the block's own, as deep whatever the number of entries: a
// block holds 16 groups of 16 pages (hostPage, the entries of a /24 or
// /120), each in 8 chunks of 32 entries.
//
// A block is found by the same primary index as a row (prefixIndex maps a
// host prefix to its block's key), so the family-and-length prefix seeks
// still see host entries. A block never is empty: the last entry's delete
// deletes the row; nor are its groups, pages and chunks (nil instead).
//
// Blocks follow the table's copy-on-write rule, level by level (a change
// copies the block, one group, one page and one chunk), with one
// exception: what the current WriteTxn created is not visible to any
// reader until the commit, so that transaction changes it in place
// instead of copying it for every entry. WriteTxn.seal ends that before
// the commit.
type ipBlock struct {
	// base is the block's first address (last two bytes zero), unmapped.
	base netip.Addr
	// groups hold the pages by the high nibble of the block's second last
	// byte.
	groups [groupsPerBlock]*pageGroup
	// n is the number of entries.
	n int
	// owner is the transaction that created the row and may still modify
	// it; nil once that transaction committed.
	owner *WriteTxn
}

// pageGroup is 16 pages of a block, by the low nibble of the second last
// byte, under the same copy-on-write rule as the block.
type pageGroup struct {
	pages [pagesPerGroup]*hostPage
	owner *WriteTxn
}

// hostPage is the entries of addresses that differ only in their last
// byte, under the same copy-on-write rule as the block.
type hostPage struct {
	// present has a bit per address of the page: bit last%32 of
	// present[last/32]. It locates an entry without a search (its index
	// in its chunk is the number of bits below its own) and without
	// reading the entries, which at 100k entries are mostly cold in the
	// cache.
	present [chunksPerPage]uint32
	// chunks hold the entries by last>>chunkShift, in the order of their
	// addresses; nil when empty. A transaction copies only the chunk it
	// changes: with one slice per page, every change of one entry copied
	// 256 of them (16 KB, mostly cold in the cache at 100k entries), which
	// made a change 1.4-2 times slower with 100k entries than with 1k.
	chunks [chunksPerPage][]hostEntry
	// owner is the transaction that created the page and may still
	// modify it; owned has a bit per chunk it created (and may modify in
	// place).
	owner *WriteTxn
	owned uint8
}

const (
	groupsPerBlock = 16
	pagesPerGroup  = 16
	chunkShift     = 5
	chunksPerPage  = 256 >> chunkShift
)

// hostEntry is one host entry of a block: an IPCacheRow without its
// prefix (the block's base and the entry's place in the block), its
// cluster and host interned together, its namespace interned. 40 bytes: a
// chunk of 32 is 1.25 KB.
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

// splitHost returns the block base and the last two bytes (big endian) of
// addr.
func splitHost(addr netip.Addr) (netip.Addr, uint16) {
	if addr.Is4() {
		b := addr.As4()
		lo := uint16(b[2])<<8 | uint16(b[3])
		b[2], b[3] = 0, 0
		return netip.AddrFrom4(b), lo
	}
	b := addr.As16()
	lo := uint16(b[14])<<8 | uint16(b[15])
	b[14], b[15] = 0, 0
	return netip.AddrFrom16(b), lo
}

// blockKey is the primary index key of the block at base: the family, the
// host length, then the nibbles of every byte but the last two. It sorts
// like the keys of the host prefixes it holds (prefixKey) would.
func blockKey(base netip.Addr) []byte {
	raw := base.As16()
	addr := raw[:14]
	if base.Is4() {
		addr = raw[12:14]
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

// groupOf and pageOf are the indexes of lo's group in its block and of
// its page in the group.
func groupOf(lo uint16) int { return int(lo >> 12) }
func pageOf(lo uint16) int  { return int(lo>>8) & (pagesPerGroup - 1) }

// page returns the page of lo, or nil.
func (b *ipBlock) page(lo uint16) *hostPage {
	g := b.groups[groupOf(lo)]
	if g == nil {
		return nil
	}
	return g.pages[pageOf(lo)]
}

// slot returns the chunk of last, its bit in present[ci], and the index
// its entry has (or would have) in the chunk.
func (p *hostPage) slot(last byte) (ci byte, bit uint32, i int) {
	ci, bit = last>>chunkShift, 1<<(last&(1<<chunkShift-1))
	return ci, bit, bits.OnesCount32(p.present[ci] & (bit - 1))
}

// find returns the entry of lo, if any.
func (b *ipBlock) find(lo uint16) (*hostEntry, bool) {
	p := b.page(lo)
	if p == nil {
		return nil, false
	}
	ci, bit, i := p.slot(byte(lo))
	if p.present[ci]&bit == 0 {
		return nil, false
	}
	return &p.chunks[ci][i], true
}

// each calls f with every entry and its last two bytes, in the order of
// their addresses.
func (b *ipBlock) each(f func(lo uint16, e *hostEntry)) {
	for gi, g := range b.groups {
		if g == nil {
			continue
		}
		for pi, p := range g.pages {
			if p != nil {
				p.each(uint16(gi<<12|pi<<8), f)
			}
		}
	}
}

// each calls f with every entry of the page at hi (the last two bytes of
// its first address) and its last two bytes, in order.
func (p *hostPage) each(hi uint16, f func(lo uint16, e *hostEntry)) {
	for ci, c := range p.chunks {
		i := 0
		for m := p.present[ci]; m != 0; m &= m - 1 {
			f(hi|uint16(ci<<chunkShift|bits.TrailingZeros32(m)), &c[i])
			i++
		}
	}
}

// row returns e, the entry of b at lo, as an ipcache row.
func (b *ipBlock) row(lo uint16, e *hostEntry) IPCacheRow {
	o := e.origin.Value()
	return IPCacheRow{Prefix: b.hostPrefix(lo), Cluster: o.cluster, ID: e.id,
		HostIP: o.hostIP, Namespace: e.namespace.Value(), Pod: e.pod}
}

// hostPrefix returns the host prefix of the block's address ending in lo.
func (b *ipBlock) hostPrefix(lo uint16) netip.Prefix {
	var addr netip.Addr
	if b.base.Is4() {
		a := b.base.As4()
		a[2], a[3] = byte(lo>>8), byte(lo)
		addr = netip.AddrFrom4(a)
	} else {
		a := b.base.As16()
		a[14], a[15] = byte(lo>>8), byte(lo)
		addr = netip.AddrFrom16(a)
	}
	return netip.PrefixFrom(addr, addr.BitLen())
}

// writableBlock returns a block the transaction may modify in place: b
// itself if the transaction created it, else a copy of b (or a new empty
// block at base when b is nil) inserted in its place. The copy shares b's
// groups: modify one through writablePage.
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

// writablePage returns the page of lo in b (a block the transaction may
// modify) for the transaction to modify in place: copied, with its group,
// unless the transaction created them; a new empty one if there is none.
// The copy shares the page's chunks: modify one through writableChunk.
func (w *WriteTxn) writablePage(b *ipBlock, lo uint16) *hostPage {
	gi, pi := groupOf(lo), pageOf(lo)
	g := b.groups[gi]
	if g == nil || g.owner != w {
		ng := &pageGroup{owner: w}
		if g != nil {
			ng.pages = g.pages
		}
		b.groups[gi], g = ng, ng
	}
	p := g.pages[pi]
	if p == nil || p.owner != w {
		np := &hostPage{}
		if p != nil {
			*np = *p
		}
		np.owner, np.owned = w, 0
		g.pages[pi], p = np, np
	}
	return p
}

// dropIfEmpty removes the page of lo from b (a block the transaction
// modifies) if it has no entries left, and its group if it has no pages.
func (b *ipBlock) dropIfEmpty(lo uint16) {
	g := b.groups[groupOf(lo)]
	if p := g.pages[pageOf(lo)]; p.present != [chunksPerPage]uint32{} {
		return
	}
	g.pages[pageOf(lo)] = nil
	if g.pages == [pagesPerGroup]*hostPage{} {
		b.groups[groupOf(lo)] = nil
	}
}

// writableChunk returns chunk ci of p (a page the transaction may
// modify) for the transaction to modify in place, copied (with room for
// one more entry) unless the transaction created it.
func (w *WriteTxn) writableChunk(p *hostPage, ci byte) []hostEntry {
	c := p.chunks[ci]
	if p.owned&(1<<ci) != 0 {
		return c
	}
	nc := make([]hostEntry, len(c), len(c)+1)
	copy(nc, c)
	p.chunks[ci], p.owned = nc, p.owned|1<<ci
	return nc
}

// upsertHost is UpsertIP for a host prefix (masked, unmapped).
func (w *WriteTxn) upsertHost(e *IPCacheRow) error {
	base, lo := splitHost(e.Prefix.Addr())
	b, err := first[ipBlock](w.txn, TableIPCache, IndexID, e.Prefix)
	if err != nil {
		return err
	}
	he := newHostEntry(e)
	if b != nil {
		if old, found := b.find(lo); found && *old == he {
			return nil
		}
	}
	nb, err := w.writableBlock(b, base)
	if err != nil {
		return err
	}
	w.changed = true
	p := w.writablePage(nb, lo)
	ci, bit, i := p.slot(byte(lo))
	c := w.writableChunk(p, ci)
	if p.present[ci]&bit != 0 {
		c[i] = he
	} else {
		p.chunks[ci] = slices.Insert(c, i, he)
		p.present[ci] |= bit
		nb.n++
	}
	if b != nil {
		return nil
	}
	return w.addPrefixLen(e.Prefix)
}

// deleteHost is DeleteIP for a host prefix (masked, unmapped).
func (w *WriteTxn) deleteHost(cluster string, p netip.Prefix) error {
	_, lo := splitHost(p.Addr())
	b, err := first[ipBlock](w.txn, TableIPCache, IndexID, p)
	if err != nil || b == nil {
		return err
	}
	old, found := b.find(lo)
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
	pg := w.writablePage(nb, lo)
	ci, bit, i := pg.slot(byte(lo))
	pg.chunks[ci] = slices.Delete(w.writableChunk(pg, ci), i, i+1)
	pg.present[ci] &^= bit
	if pg.present[ci] == 0 {
		pg.chunks[ci] = nil
	}
	nb.dropIfEmpty(lo)
	nb.n--
	return nil
}

// drainBlock removes the entries of cluster from b, and reports whether
// the block is gone.
func (w *WriteTxn) drainBlock(b *ipBlock, cluster string) (bool, error) {
	type pageDrop struct {
		hi   uint16                // the page's first address's last two bytes
		bits [chunksPerPage]uint32 // the bits of cluster's entries
	}
	var drops []pageDrop
	total := 0
	for gi, g := range b.groups {
		if g == nil {
			continue
		}
		for pi, p := range g.pages {
			if p == nil {
				continue
			}
			d := pageDrop{hi: uint16(gi<<12 | pi<<8)}
			p.each(d.hi, func(lo uint16, e *hostEntry) {
				if e.cluster() == cluster {
					d.bits[byte(lo)>>chunkShift] |= 1 << (lo & (1<<chunkShift - 1))
					total++
				}
			})
			if d.bits != [chunksPerPage]uint32{} {
				drops = append(drops, d)
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
	for _, d := range drops {
		p := w.writablePage(nb, d.hi)
		for ci, db := range d.bits {
			if db == 0 {
				continue
			}
			var kept []hostEntry
			i := 0
			for m := p.present[ci]; m != 0; m &= m - 1 {
				if db&(m&-m) == 0 {
					kept = append(kept, p.chunks[ci][i])
				}
				i++
			}
			p.chunks[ci], p.present[ci] = kept, p.present[ci]&^db
			p.owned |= 1 << ci
		}
		nb.dropIfEmpty(d.hi)
	}
	nb.n -= total
	return false, nil
}

// seal makes the blocks (and groups, pages and chunks) this transaction
// modified immutable, before the commit publishes them, and gives back the
// spare capacity of their entries.
func (w *WriteTxn) seal() {
	for _, b := range w.blocks {
		b.owner = nil
		for _, g := range b.groups {
			if g == nil || g.owner != w {
				continue
			}
			g.owner = nil
			for _, p := range g.pages {
				if p == nil || p.owner != w {
					continue
				}
				for ci, c := range p.chunks {
					if p.owned&(1<<ci) == 0 {
						continue
					}
					if n := len(c); cap(c)-n > 2+n/16 {
						p.chunks[ci] = slices.Clone(c)
					}
				}
				p.owner, p.owned = nil, 0
			}
		}
	}
	w.blocks = nil
}
