package state

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	"github.com/hashicorp/go-memdb"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

var errEmptyCluster = errors.New("empty cluster name")

// WriteTxn is one write transaction, valid only inside the function given
// to State.Update. Its methods keep the tables' invariants (the ipcache
// prefix lengths, masked prefixes, owner-only deletes).
type WriteTxn struct {
	txn     *memdb.Txn
	changed bool
	blocks  []*ipBlock // the ipcache blocks this transaction created, to seal
	// idBlocks are the identities' blocks this transaction created, to
	// seal.
	idBlocks []*idBlock
}

// Update runs fn in one write transaction. It commits when fn returns nil
// and changed something, waking Changed; it discards every change of fn
// when fn fails, and returns fn's error. Writers are serialized.
func (s *State) Update(fn func(*WriteTxn) error) error {
	txn := s.db.Txn(true)
	defer txn.Abort() // no-op after Commit
	txn.TrackChanges()
	w := &WriteTxn{txn: txn}
	if err := fn(w); err != nil {
		return err
	}
	if !w.changed {
		return nil
	}
	w.seal()
	w.sealIDBlocks()
	changes := txn.Changes()
	// The change log is appended in commit order: no other commit may
	// come between this one and its append.
	s.commitMu.Lock()
	txn.Commit()
	s.changes.append(changes)
	s.commitMu.Unlock()
	s.notify()
	return nil
}

func (w *WriteTxn) insert(table string, row any) error {
	if err := w.txn.Insert(table, row); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	w.changed = true
	return nil
}

func (w *WriteTxn) delete(table string, row any) error {
	if err := w.txn.Delete(table, row); err != nil {
		return fmt.Errorf("delete from %s: %w", table, err)
	}
	w.changed = true
	return nil
}

// first returns the row of table whose index matches args, or nil.
func first[T any](txn *memdb.Txn, table, index string, args ...any) (*T, error) {
	raw, err := txn.First(table, index, args...)
	if err != nil {
		return nil, fmt.Errorf("look up %s by %s: %w", table, index, err)
	}
	row, _ := raw.(*T)
	return row, nil
}

// UpsertIdentity sets the labels of id, owned by cluster.
func (w *WriteTxn) UpsertIdentity(cluster string, id identity.NumericIdentity, labels identity.Labels) error {
	if cluster == "" {
		return errEmptyCluster
	}
	blk, err := identityBlock(w.txn, id)
	if err != nil {
		return err
	}
	if old := blk.get(id); old != nil && old.Cluster == cluster && old.Labels.Equal(labels) {
		return nil
	}
	key := labels.SortedKVStoreString()
	// The row's labels are parsed again from its key, so that they share
	// its bytes: the caller's (a peer's decoded value) need not be kept
	// too, about 100 bytes an identity.
	if shared, err := identity.ParseKVStoreLabels(key); err == nil && shared.Equal(labels) {
		labels = shared
	}
	return w.setIdentity(blk, &IdentityRow{Cluster: cluster, ID: id, Labels: labels, LabelsKey: key})
}

// DeleteIdentity removes id if cluster owns it.
func (w *WriteTxn) DeleteIdentity(cluster string, id identity.NumericIdentity) error {
	blk, err := identityBlock(w.txn, id)
	if err != nil {
		return err
	}
	if old := blk.get(id); old == nil || old.Cluster != cluster {
		return nil
	}
	return w.removeIdentity(blk, id)
}

// normalizePrefix masks p and unmaps an IPv4-mapped prefix.
func normalizePrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid prefix %s", p)
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("ipv4-mapped prefix %s is shorter than /96", p)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// UpsertIP sets the ipcache entry of e.Prefix (masked first), replacing
// whatever row the prefix had, whichever cluster it came from (the last
// writer wins, as in Cilium's ipcache for entries of one source).
func (w *WriteTxn) UpsertIP(e IPCacheRow) error {
	if e.Cluster == "" {
		return errEmptyCluster
	}
	p, err := normalizePrefix(e.Prefix)
	if err != nil {
		return err
	}
	e.Prefix, e.HostIP = p, e.HostIP.Unmap()
	if isHostPrefix(p) {
		return w.upsertHost(&e)
	}
	old, err := first[IPCacheRow](w.txn, TableIPCache, IndexID, p)
	if err != nil {
		return err
	}
	if old != nil && *old == e {
		return nil
	}
	if err := w.insert(TableIPCache, &e); err != nil {
		return err
	}
	if old != nil {
		return nil
	}
	return w.addPrefixLen(p)
}

// DeleteIP removes the entry of prefix if cluster owns it.
func (w *WriteTxn) DeleteIP(cluster string, prefix netip.Prefix) error {
	p, err := normalizePrefix(prefix)
	if err != nil {
		return err
	}
	if isHostPrefix(p) {
		return w.deleteHost(cluster, p)
	}
	old, err := first[IPCacheRow](w.txn, TableIPCache, IndexID, p)
	if err != nil || old == nil || old.Cluster != cluster {
		return err
	}
	if err := w.delete(TableIPCache, old); err != nil {
		return err
	}
	return w.dropPrefixLen(p.Addr().Is6(), uint8(p.Bits()))
}

// addPrefixLen records that the ipcache table has a row of p's length.
func (w *WriteTxn) addPrefixLen(p netip.Prefix) error {
	is6, bits := p.Addr().Is6(), uint8(p.Bits())
	old, err := first[prefixLen](w.txn, tablePrefixLens, IndexID, is6, bits)
	if err != nil || old != nil {
		return err
	}
	return w.insert(tablePrefixLens, &prefixLen{Is6: is6, Bits: bits})
}

// dropPrefixLen forgets a family and length that no ipcache row has any
// more.
func (w *WriteTxn) dropPrefixLen(is6 bool, bits uint8) error {
	left, err := w.txn.First(TableIPCache, IndexID+"_prefix", is6, bits)
	if err != nil {
		return fmt.Errorf("look up ipcache rows of length %d: %w", bits, err)
	}
	if left != nil {
		return nil
	}
	old, err := first[prefixLen](w.txn, tablePrefixLens, IndexID, is6, bits)
	if err != nil || old == nil {
		return err
	}
	return w.delete(tablePrefixLens, old)
}

// UpsertNode sets node n.Name of cluster.
func (w *WriteTxn) UpsertNode(cluster string, n schema.Node) error {
	switch {
	case cluster == "":
		return errEmptyCluster
	case n.Name == "":
		return errors.New("empty node name")
	}
	return upsertChanged(w, TableNodes, &NodeRow{Cluster: cluster, Name: n.Name, Node: n}, cluster, n.Name)
}

// DeleteNode removes node name of cluster.
func (w *WriteTxn) DeleteNode(cluster, name string) error {
	return w.deleteByID(TableNodes, cluster, name)
}

// UpsertService sets cluster's copy of the Service s.Namespace/s.Name.
func (w *WriteTxn) UpsertService(cluster string, s schema.ClusterService) error {
	switch {
	case cluster == "":
		return errEmptyCluster
	case s.Namespace == "" || s.Name == "":
		return fmt.Errorf("service %q/%q has an empty namespace or name", s.Namespace, s.Name)
	}
	return upsertChanged(w, TableServices, &ServiceRow{Cluster: cluster, Namespace: s.Namespace, Name: s.Name, Service: s}, cluster, s.Namespace, s.Name)
}

// DeleteService removes cluster's copy of the Service namespace/name.
func (w *WriteTxn) DeleteService(cluster, namespace, name string) error {
	return w.deleteByID(TableServices, cluster, namespace, name)
}

// upsertChanged inserts row unless the row of the same primary key (id)
// is deeply equal, so that rewriting an unchanged object (an informer
// resync, a status heartbeat) wakes no reconciler.
func upsertChanged[T any](w *WriteTxn, table string, row *T, id ...any) error {
	old, err := first[T](w.txn, table, IndexID, id...)
	if err != nil {
		return err
	}
	if old != nil && reflect.DeepEqual(old, row) {
		return nil
	}
	return w.insert(table, row)
}

func (w *WriteTxn) deleteByID(table string, key ...any) error {
	for _, k := range key {
		if k == "" { // StringFieldIndex rejects empty strings
			return nil
		}
	}
	raw, err := w.txn.First(table, IndexID, key...)
	if err != nil || raw == nil {
		return err
	}
	return w.delete(table, raw)
}

// Drain removes every identity, ip entry, node and service of cluster.
func (w *WriteTxn) Drain(cluster string) error {
	if cluster == "" {
		return nil
	}
	lens := map[prefixLen]bool{} // lengths of the deleted ipcache rows
	for _, table := range []string{TableIdentities, TableIPCache, TableNodes, TableServices} {
		var rows []any
		index, args := IndexCluster, []any{cluster}
		switch table {
		case TableIPCache, TableIdentities: // not indexed by cluster: scan
			index, args = IndexID, nil
		case TableServices:
			index, args = servicesOfIndex, servicesOfArgs(cluster)
		}
		it, err := w.txn.Get(table, index, args...)
		if err != nil {
			return fmt.Errorf("list %s of cluster %s: %w", table, cluster, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if e, ok := raw.(*IPCacheRow); ok && e.Cluster != cluster {
				continue
			}
			if b, ok := raw.(*idBlock); ok && !slices.ContainsFunc(b.rows, func(r *IdentityRow) bool { return r.Cluster == cluster }) {
				continue
			}
			rows = append(rows, raw) // collect, then delete
		}
		for _, raw := range rows {
			if b, ok := raw.(*idBlock); ok {
				for _, r := range slices.Clone(b.rows) {
					if r.Cluster != cluster {
						continue
					}
					cur, err := identityBlock(w.txn, r.ID)
					if err != nil {
						return err
					}
					if err := w.removeIdentity(cur, r.ID); err != nil {
						return err
					}
				}
				continue
			}
			if b, ok := raw.(*ipBlock); ok {
				gone, err := w.drainBlock(b, cluster)
				if err != nil {
					return err
				}
				if gone {
					lens[prefixLen{Is6: b.base.Is6(), Bits: uint8(b.base.BitLen())}] = true
				}
				continue
			}
			if err := w.delete(table, raw); err != nil {
				return err
			}
			if e, ok := raw.(*IPCacheRow); ok {
				lens[prefixLen{Is6: e.Prefix.Addr().Is6(), Bits: uint8(e.Prefix.Bits())}] = true
			}
		}
	}
	for pl := range lens {
		if err := w.dropPrefixLen(pl.Is6, pl.Bits); err != nil {
			return err
		}
	}
	return nil
}

// MarkInitialized records that source has delivered its initial state.
func (w *WriteTxn) MarkInitialized(source string) error {
	if source == "" {
		return errors.New("empty source name")
	}
	old, err := first[InitializedRow](w.txn, TableInitialized, IndexID, source)
	if err != nil || (old != nil && old.Done) {
		return err
	}
	return w.insert(TableInitialized, &InitializedRow{Source: source, Done: true})
}
