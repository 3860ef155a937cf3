package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"github.com/hashicorp/go-memdb"

	"github.com/clustermesh/clustermesh/identity"
)

// The identities table holds its rows in blocks of idBlockSize
// consecutive identities: a row of go-memdb's radix tree costs about 380
// bytes (its leaf, node, edges and their watch channels), ten times what
// an identity row itself takes; with blocks that cost is paid per block.
// A cluster allocates its identities from its own range, so the
// identities of a peer share blocks. Rows stay immutable: a block's copy
// shares the rows it did not change, so an unchanged identity is the same
// pointer in every snapshot.
const (
	idBlockShift = 6
	idBlockSize  = 1 << idBlockShift
)

// idBlock is the rows of the identities base..base+idBlockSize-1 that
// exist: present has a bit per identity, rows the rows in the order of
// their identities (a row's index is the number of bits below its own).
type idBlock struct {
	base    identity.NumericIdentity
	present uint64
	rows    []*IdentityRow
	// owner is the transaction that created the block and may still
	// modify it; nil once that transaction committed.
	owner *WriteTxn
}

func idBlockBase(id identity.NumericIdentity) identity.NumericIdentity {
	return id &^ (idBlockSize - 1)
}

// slot returns the bit of id and the index its row has (or would have).
func (b *idBlock) slot(id identity.NumericIdentity) (uint64, int) {
	bit := uint64(1) << (id & (idBlockSize - 1))
	return bit, bits.OnesCount64(b.present & (bit - 1))
}

// get returns the row of id, or nil.
func (b *idBlock) get(id identity.NumericIdentity) *IdentityRow {
	if b == nil {
		return nil
	}
	bit, i := b.slot(id)
	if b.present&bit == 0 {
		return nil
	}
	return b.rows[i]
}

// identityIndex indexes a block of the identities table by its base (4
// bytes, big endian, as memdb's UintFieldIndex did an identity); given an
// identity, it finds the identity's block.
type identityIndex struct{}

func (identityIndex) FromObject(raw any) (bool, []byte, error) {
	b, ok := raw.(*idBlock)
	if !ok {
		return false, nil, fmt.Errorf("identity index: unexpected row type %T", raw)
	}
	return true, binary.BigEndian.AppendUint32(nil, uint32(b.base)), nil
}

func (identityIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, errors.New("identity index: want one argument")
	}
	var id identity.NumericIdentity
	switch a := args[0].(type) {
	case identity.NumericIdentity:
		id = a
	case uint32:
		id = identity.NumericIdentity(a)
	default:
		return nil, fmt.Errorf("identity index: argument is a %T, want an identity", args[0])
	}
	return binary.BigEndian.AppendUint32(nil, uint32(idBlockBase(id))), nil
}

// identityBlock returns the block that holds id, or nil.
func identityBlock(txn *memdb.Txn, id identity.NumericIdentity) (*idBlock, error) {
	return first[idBlock](txn, TableIdentities, IndexID, id)
}

// identityRow returns the row of id, or nil.
func identityRow(txn *memdb.Txn, id identity.NumericIdentity) *IdentityRow {
	b, _ := identityBlock(txn, id)
	return b.get(id)
}

// eachIdentity calls f with every identity row, in the order of their
// identities.
func eachIdentity(txn *memdb.Txn, f func(*IdentityRow)) {
	it, err := txn.Get(TableIdentities, IndexID)
	if err != nil {
		return
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if b, ok := raw.(*idBlock); ok {
			for _, r := range b.rows {
				f(r)
			}
		}
	}
}

// writableIDBlock returns a block the transaction may modify in place:
// b itself if the transaction created it, else a copy of b (or a new
// empty block at base when b is nil) inserted in its place.
func (w *WriteTxn) writableIDBlock(b *idBlock, base identity.NumericIdentity) (*idBlock, error) {
	if b != nil && b.owner == w {
		return b, nil
	}
	nb := &idBlock{base: base, owner: w}
	if b != nil {
		nb.present = b.present
		nb.rows = make([]*IdentityRow, len(b.rows), len(b.rows)+1)
		copy(nb.rows, b.rows)
	}
	if err := w.insert(TableIdentities, nb); err != nil {
		return nil, err
	}
	w.idBlocks = append(w.idBlocks, nb)
	return nb, nil
}

// setIdentity puts r in its block, replacing the row of its identity.
func (w *WriteTxn) setIdentity(old *idBlock, r *IdentityRow) error {
	b, err := w.writableIDBlock(old, idBlockBase(r.ID))
	if err != nil {
		return err
	}
	bit, i := b.slot(r.ID)
	if b.present&bit != 0 {
		b.rows[i] = r
		return nil
	}
	b.rows = slices.Insert(b.rows, i, r)
	b.present |= bit
	return nil
}

// removeIdentity removes the row of id from its block b (which has it),
// and the block once it is empty.
func (w *WriteTxn) removeIdentity(old *idBlock, id identity.NumericIdentity) error {
	if old.present == 1<<(id&(idBlockSize-1)) { // the last row
		return w.delete(TableIdentities, old)
	}
	b, err := w.writableIDBlock(old, old.base)
	if err != nil {
		return err
	}
	bit, i := b.slot(id)
	b.rows = slices.Delete(b.rows, i, i+1)
	b.present &^= bit
	return nil
}

// sealIDBlocks makes the blocks this transaction created immutable, their
// rows without spare room.
func (w *WriteTxn) sealIDBlocks() {
	for _, b := range w.idBlocks {
		b.owner = nil
		if cap(b.rows) > len(b.rows) {
			b.rows = slices.Clip(slices.Clone(b.rows))
		}
	}
	w.idBlocks = nil
}

// IdentityChanges returns the identities whose row a change of the
// identities table added, changed or removed (a block reports only the
// rows that differ). Other tables' changes have none.
func IdentityChanges(c Change) []identity.NumericIdentity {
	if c.Table != TableIdentities {
		return nil
	}
	before, _ := c.Before.(*idBlock)
	after, _ := c.After.(*idBlock)
	var a, b []*IdentityRow
	var pa, pb uint64
	base := identity.NumericIdentity(0)
	if before != nil {
		pa, a, base = before.present, before.rows, before.base
	}
	if after != nil {
		pb, b, base = after.present, after.rows, after.base
	}
	var out []identity.NumericIdentity
	i, j := 0, 0
	for m := pa | pb; m != 0; m &= m - 1 {
		bit := m & -m
		inA, inB := pa&bit != 0, pb&bit != 0
		if !inA || !inB || a[i] != b[j] {
			out = append(out, base+identity.NumericIdentity(bits.TrailingZeros64(m)))
		}
		if inA {
			i++
		}
		if inB {
			j++
		}
	}
	return out
}
