package state

import (
	"net/netip"

	"github.com/hashicorp/go-memdb"

	"github.com/clustermesh/clustermesh/identity"
)

// Snapshot is a consistent, immutable view of the tables. It is cheap to
// take (no copy) and safe for concurrent use. Lookups that fail because of
// a bad table or index name (a bug) report nothing found.
type Snapshot struct {
	txn     *memdb.Txn
	changed <-chan struct{}
}

// Snapshot returns a view of the last commit.
func (s *State) Snapshot() *Snapshot {
	ch := s.Changed() // before the read: a commit in between closes ch
	return &Snapshot{txn: s.db.Txn(false), changed: ch}
}

// Changed returns a channel closed by the first commit after the snapshot
// was taken (possibly one it already includes: a spurious wake-up is
// possible, a missed change is not).
func (sn *Snapshot) Changed() <-chan struct{} { return sn.changed }

// Txn returns the snapshot's read transaction, for queries the helpers do
// not cover. Use the table and index constants; never write through it.
// The ipcache table's host entries and the identities table's rows are not
// rows of their own (blocks: see IPCacheRow and idBlock): read those tables
// with IPCache and LookupIP, and with the identity helpers.
func (sn *Snapshot) Txn() *memdb.Txn { return sn.txn }

// Identity returns the identity id.
func (sn *Snapshot) Identity(id identity.NumericIdentity) (IdentityRow, bool) {
	row := identityRow(sn.txn, id)
	if row == nil {
		return IdentityRow{}, false
	}
	return *row, true
}

// LookupIP returns the entry of the longest prefix holding addr (IPv4
// addresses may be given IPv4-mapped). The host prefix (/32, /128) is
// looked up first; then each prefix length present in the table, longest
// first, by the primary index: at most 33 (IPv4) or 129 (IPv6) lookups, in
// practice the few lengths in use, whatever the number of rows.
func (sn *Snapshot) LookupIP(addr netip.Addr) (IPCacheRow, bool) {
	if !addr.IsValid() {
		return IPCacheRow{}, false
	}
	addr = addr.Unmap().WithZone("")
	if e, ok := sn.lookupPrefix(netip.PrefixFrom(addr, addr.BitLen())); ok {
		return e, true
	}
	it, err := sn.txn.Get(tablePrefixLens, IndexID+"_prefix", addr.Is6())
	if err != nil {
		return IPCacheRow{}, false
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		pl, ok := raw.(*prefixLen)
		if !ok || int(pl.Bits) == addr.BitLen() {
			continue
		}
		if e, ok := sn.lookupPrefix(netip.PrefixFrom(addr, int(pl.Bits))); ok {
			return e, true
		}
	}
	return IPCacheRow{}, false
}

// lookupPrefix returns the row of exactly p.Masked().
func (sn *Snapshot) lookupPrefix(p netip.Prefix) (IPCacheRow, bool) {
	raw, err := sn.txn.First(TableIPCache, IndexID, p)
	if err != nil {
		return IPCacheRow{}, false
	}
	switch r := raw.(type) {
	case *IPCacheRow:
		return *r, true
	case *ipBlock:
		_, lo := splitHost(p.Masked().Addr())
		if e, ok := r.find(lo); ok {
			return r.row(lo, e), true
		}
	}
	return IPCacheRow{}, false
}

// ServiceCopies returns every cluster's copy of the Service
// namespace/name, sorted by cluster.
func (sn *Snapshot) ServiceCopies(namespace, name string) []ServiceRow {
	if namespace == "" || name == "" {
		return nil
	}
	return collect[ServiceRow](sn.txn, TableServices, IndexName, namespace, name)
}

// ServicesOf returns the Services cluster exports, sorted by namespace
// and name.
func (sn *Snapshot) ServicesOf(cluster string) []ServiceRow {
	if cluster == "" {
		return nil
	}
	return collect[ServiceRow](sn.txn, TableServices, servicesOfIndex, servicesOfArgs(cluster)...)
}

// Node returns the node name of cluster.
func (sn *Snapshot) Node(cluster, name string) (NodeRow, bool) {
	return byKey[NodeRow](sn, TableNodes, cluster, name)
}

// byKey returns a copy of the row of table whose primary key is key (all
// parts non-empty).
func byKey[T any](sn *Snapshot, table string, key ...string) (T, bool) {
	args := make([]any, len(key))
	for i, k := range key {
		if k == "" {
			return *new(T), false
		}
		args[i] = k
	}
	row, _ := first[T](sn.txn, table, IndexID, args...)
	if row == nil {
		return *new(T), false
	}
	return *row, true
}

// Nodes returns the nodes of cluster, or of every cluster when cluster is
// "", sorted by cluster then name.
func (sn *Snapshot) Nodes(cluster string) []NodeRow {
	if cluster == "" {
		return collect[NodeRow](sn.txn, TableNodes, IndexID)
	}
	return collect[NodeRow](sn.txn, TableNodes, IndexCluster, cluster)
}

// Count returns the number of rows of table (one of the Table constants;
// 0 for another name), counting each ipcache entry as one. It walks the
// table: O(rows).
func (sn *Snapshot) Count(table string) int {
	switch table {
	case TableIdentities, TableIPCache, TableNodes, TableServices, TableInitialized, TableEndpoints, TableLocalServices, TablePolicies:
	default:
		return 0
	}
	it, err := sn.txn.Get(table, IndexID)
	if err != nil {
		return 0
	}
	n := 0
	for raw := it.Next(); raw != nil; raw = it.Next() {
		switch b := raw.(type) {
		case *ipBlock:
			n += b.n
			continue
		case *idBlock:
			n += len(b.rows)
			continue
		}
		n++
	}
	return n
}

// Initialized reports whether every one of sources is initialized (true
// when none is given).
func (sn *Snapshot) Initialized(sources ...string) bool {
	for _, src := range sources {
		if src == "" {
			return false
		}
		row, _ := first[InitializedRow](sn.txn, TableInitialized, IndexID, src)
		if row == nil || !row.Done {
			return false
		}
	}
	return true
}

// collect copies the rows an index query returns, in index order.
func collect[T any](txn *memdb.Txn, table, index string, args ...any) []T {
	it, err := txn.Get(table, index, args...)
	if err != nil {
		return nil
	}
	var out []T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if row, ok := raw.(*T); ok {
			out = append(out, *row)
		}
	}
	return out
}

// IPCache returns every ipcache entry, in the primary index's order.
func (sn *Snapshot) IPCache() []IPCacheRow {
	it, err := sn.txn.Get(TableIPCache, IndexID)
	if err != nil {
		return nil
	}
	var out []IPCacheRow
	for raw := it.Next(); raw != nil; raw = it.Next() {
		switch r := raw.(type) {
		case *IPCacheRow:
			out = append(out, *r)
		case *ipBlock:
			r.each(func(lo uint16, e *hostEntry) { out = append(out, r.row(lo, e)) })
		}
	}
	return out
}

// Identities returns every identity row.
func (sn *Snapshot) Identities() []IdentityRow {
	var out []IdentityRow
	eachIdentity(sn.txn, func(r *IdentityRow) { out = append(out, *r) })
	return out
}
