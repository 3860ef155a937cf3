package state

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/hashicorp/go-memdb"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Table names.
const (
	TableIdentities  = "identities"
	TableIPCache     = "ipcache"
	TableNodes       = "nodes"
	TableServices    = "services"
	TableInitialized = "initialized"
	// tablePrefixLens is internal: one prefixLen row per (family, prefix
	// length) present in the ipcache table, for longest-prefix match. It
	// is written only when a length appears or disappears.
	tablePrefixLens = "prefixlens"
)

// Index names. memdb requires the primary (unique) index of every table to
// be named "id".
const (
	// IndexID is the primary index. identities: the numeric identity
	// (uint32, big endian). ipcache: the prefix (see prefixIndex). nodes: (cluster, name). services: (cluster, namespace,
	// name). initialized: the source.
	IndexID = "id"
	// IndexCluster (nodes) is the row's Cluster; it is not unique. The
	// rows of one cluster in the other tables are read through their
	// primary index: a prefix scan of the services' (cluster, namespace,
	// name) (servicesOfArgs), a scan of the identities and the ipcache.
	IndexCluster = "cluster"
	// IndexName (services only) is (namespace, name); it is not unique, so
	// that every cluster's copy of one Service can be listed.
	IndexName = "name"
)

// IdentityRow is a row of the identities table.
type IdentityRow struct {
	Cluster string
	ID      identity.NumericIdentity
	Labels  identity.Labels
	// LabelsKey is Labels.SortedKVStoreString(), computed once on write.
	LabelsKey string
}

// IPCacheRow is a row of the ipcache table: the identity of the
// addresses of Prefix. Entries of other lengths than a single address are
// rows of their own; host entries (/32, /128) are stored in blocks (see
// ipBlock), so read the table with Snapshot.IPCache and LookupIP, not
// through Snapshot.Txn.
type IPCacheRow struct {
	// Prefix is masked and, for IPv4, unmapped.
	Prefix  netip.Prefix
	Cluster string
	ID      identity.NumericIdentity
	// HostIP is the node hosting the addresses (the tunnel endpoint), or
	// the zero Addr.
	HostIP    netip.Addr
	Namespace string
	Pod       string
}

// NodeRow is a row of the nodes table.
type NodeRow struct {
	Cluster string
	Name    string
	Node    schema.Node
}

// ServiceRow is a row of the services table: one cluster's copy of a
// Service.
type ServiceRow struct {
	Cluster   string
	Namespace string
	Name      string
	Service   schema.ClusterService
}

// InitializedRow is a row of the initialized table.
type InitializedRow struct {
	Source string
	Done   bool
}

// prefixLen says that the ipcache table has rows of one family and prefix
// length.
type prefixLen struct {
	Is6  bool
	Bits uint8
}

// servicesOfIndex and servicesOfArgs list the services of a cluster: a
// prefix scan of the primary index on "<cluster>\x00" (the cluster whole,
// then any namespace: a bare prefix "c2" would also match "c20"), in the
// primary key's order (namespace, name). A cluster index would give
// every service a second radix entry (about 400 bytes) for that alone.
const servicesOfIndex = IndexID + "_prefix"

func servicesOfArgs(cluster string) []any { return []any{cluster, ""} }

func dbSchema() *memdb.DBSchema {
	str := func(field string) *memdb.StringFieldIndex { return &memdb.StringFieldIndex{Field: field} }
	compound := func(fields ...string) *memdb.CompoundIndex {
		ix := &memdb.CompoundIndex{}
		for _, f := range fields {
			ix.Indexes = append(ix.Indexes, str(f))
		}
		return ix
	}
	table := func(name string, id memdb.Indexer, more ...*memdb.IndexSchema) *memdb.TableSchema {
		t := &memdb.TableSchema{Name: name, Indexes: map[string]*memdb.IndexSchema{
			IndexID: {Name: IndexID, Unique: true, Indexer: id},
		}}
		for _, ix := range more {
			t.Indexes[ix.Name] = ix
		}
		return t
	}
	byCluster := &memdb.IndexSchema{Name: IndexCluster, Indexer: clusterIndex{}}
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		// No cluster index on the identities and the ipcache: it would
		// add a radix tree entry (about 400 bytes) to every row of the
		// two largest tables, and their write cost, for the one rare
		// operation that needs it (Drain), which scans instead.
		TableIdentities:     table(TableIdentities, identityIndex{}), // blocks of rows (idBlock)
		TableIPCache:        table(TableIPCache, prefixIndex{}),
		TableNodes:          table(TableNodes, compound("Cluster", "Name"), byCluster, &memdb.IndexSchema{Name: IndexAddr, Indexer: addrIndex{}, AllowMissing: true}),
		TableServices:       table(TableServices, compound("Cluster", "Namespace", "Name"), &memdb.IndexSchema{Name: IndexName, Indexer: compound("Namespace", "Name")}),
		TableInitialized:    table(TableInitialized, str("Source")),
		tablePrefixLens:     table(tablePrefixLens, prefixLenIndex{}),
		TableEndpoints:      table(TableEndpoints, compound("Namespace", "Name")),
		TableLocalServices:  table(TableLocalServices, compound("Namespace", "Name"), &memdb.IndexSchema{Name: IndexAddr, Indexer: addrIndex{}, AllowMissing: true}),
		TablePolicies:       table(TablePolicies, str("Key")),
		TableNamedPorts:     table(TableNamedPorts, str("Name")),
		TableCIDRIdentities: table(TableCIDRIdentities, cidrIndex{}),
		TableAttachments:    table(TableAttachments, str("Key"), &memdb.IndexSchema{Name: IndexAddr, Indexer: addrIndex{}, AllowMissing: true}),
	}}
}

// clusterIndex indexes a row by its Cluster, NUL-terminated as memdb's
// StringFieldIndex does, without reflection.
type clusterIndex struct{}

func (clusterIndex) FromObject(raw any) (bool, []byte, error) {
	var c string
	switch r := raw.(type) {
	case *IdentityRow:
		c = r.Cluster
	case *IPCacheRow:
		c = r.Cluster
	case *NodeRow:
		c = r.Cluster
	case *ServiceRow:
		c = r.Cluster
	default:
		return false, nil, fmt.Errorf("cluster index: unexpected row type %T", raw)
	}
	return c != "", append([]byte(c), 0), nil
}

func (clusterIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, errors.New("cluster index: want one argument")
	}
	c, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("cluster index: argument is a %T, want a string", args[0])
	}
	return append([]byte(c), 0), nil
}

// prefixIndex indexes an ipcache row by its prefix, and a block of host
// entries (ipBlock) by its base; given a host prefix, it finds the prefix's
// block. A prefix key is the family (4 or 6),
// the length, then the address bytes split in nibbles. It is binary rather
// than the prefix's string form (no formatting on the lookup path), and
// split in nibbles because every write copies the radix tree path to the
// new leaf: with whole bytes the inner nodes of dense ranges have up to 256
// edges, all copied on each insert; with nibbles at most 16. That made
// one-entry transactions a third faster than whole bytes, for 2% more
// memory. The family and length come first so that "is any prefix of this
// length left" is one prefix seek (PrefixFromArgs(is6, bits)).
type prefixIndex struct{}

func (prefixIndex) FromObject(raw any) (bool, []byte, error) {
	switch r := raw.(type) {
	case *IPCacheRow:
		return r.Prefix.IsValid(), prefixKey(r.Prefix), nil
	case *ipBlock:
		return r.base.IsValid(), blockKey(r.base), nil
	default:
		return false, nil, fmt.Errorf("prefix index: unexpected row type %T", raw)
	}
}

func (prefixIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, errors.New("prefix index: want one argument")
	}
	p, ok := args[0].(netip.Prefix)
	if !ok {
		return nil, fmt.Errorf("prefix index: argument is a %T, want a netip.Prefix", args[0])
	}
	if p = p.Masked(); isHostPrefix(p) {
		base, _ := splitHost(p.Addr())
		return blockKey(base), nil
	}
	return prefixKey(p), nil
}

// PrefixFromArgs takes a family (a bool: IPv6) and a length (uint8), and
// matches every prefix of that family and length.
func (prefixIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	if len(args) != 2 {
		return nil, errors.New("prefix index: want a family and a length")
	}
	is6, ok1 := args[0].(bool)
	bits, ok2 := args[1].(uint8)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("prefix index: arguments are %T, %T, want bool, uint8", args[0], args[1])
	}
	return []byte{familyByte(is6), bits}, nil
}

func prefixKey(p netip.Prefix) []byte {
	a := p.Addr()
	raw := a.As16()
	addr := raw[:]
	if a.Is4() {
		addr = addr[12:]
	}
	key := make([]byte, 2, 2+2*len(addr))
	key[0], key[1] = familyByte(a.Is6()), byte(p.Bits())
	for _, b := range addr {
		key = append(key, b>>4, b&0xf)
	}
	return key
}

// prefixLenIndex indexes prefixLen rows by family, then by decreasing
// length, so that iterating one family visits the longest prefixes first.
type prefixLenIndex struct{}

func (prefixLenIndex) FromObject(raw any) (bool, []byte, error) {
	r, ok := raw.(*prefixLen)
	if !ok {
		return false, nil, fmt.Errorf("prefix length index: unexpected row type %T", raw)
	}
	return true, []byte{familyByte(r.Is6), ^r.Bits}, nil
}

func (prefixLenIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 2 {
		return nil, errors.New("prefix length index: want a family and a length")
	}
	is6, ok1 := args[0].(bool)
	bits, ok2 := args[1].(uint8)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("prefix length index: arguments are %T, %T, want bool, uint8", args[0], args[1])
	}
	return []byte{familyByte(is6), ^bits}, nil
}

// PrefixFromArgs takes only the family (a bool: IPv6).
func (prefixLenIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, errors.New("prefix length index: want a family")
	}
	is6, ok := args[0].(bool)
	if !ok {
		return nil, fmt.Errorf("prefix length index: argument is a %T, want a bool", args[0])
	}
	return []byte{familyByte(is6)}, nil
}

func familyByte(is6 bool) byte {
	if is6 {
		return 6
	}
	return 4
}

// State is the agent's desired state. It is safe for concurrent use.
type State struct {
	db  *memdb.MemDB
	log *slog.Logger

	mu      sync.Mutex    // guards changed
	changed chan struct{} // closed, then replaced, by every commit

	commitMu sync.Mutex // orders commits and their changes in the log
	changes  *changeLog
}

// New returns an empty State. Writes the remote sink cannot apply are
// logged to log (nil discards them).
func New(log *slog.Logger) (*State, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := memdb.NewMemDB(dbSchema())
	if err != nil {
		return nil, fmt.Errorf("create state tables: %w", err)
	}
	return &State{db: db, log: log, changed: make(chan struct{}), changes: newChangeLog(DefaultChangeLogLimit)}, nil
}

// Changed returns a channel closed by the next commit. Take it before the
// snapshot it guards (Snapshot does) so that no commit is missed.
func (s *State) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// notify wakes the readers waiting for a change.
func (s *State) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
}
