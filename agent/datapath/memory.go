package datapath

import (
	"context"
	"maps"
	"net/netip"
	"reflect"
	"sync"

	"github.com/clustermesh/clustermesh/identity"
)

// Memory is the in-memory datapath: it keeps every value whole, so List
// returns exactly what Update wrote.
type Memory struct {
	ipcache  *MemTable[netip.Prefix, IPCacheEntry]
	peers    *MemTable[string, Peer]
	services *MemTable[ServiceKey, Service]
	policies *MemTable[uint16, EndpointPolicy]
	attached *MemTable[int, Attachment]
	cidrs    *MemTable[netip.Prefix, identity.NumericIdentity]
}

// NewMemory returns an empty in-memory datapath.
func NewMemory() *Memory {
	return &Memory{
		ipcache:  NewMemTable[netip.Prefix, IPCacheEntry](),
		peers:    NewMemTable[string, Peer](),
		services: NewMemTable[ServiceKey, Service](),
		policies: NewMemTable[uint16, EndpointPolicy](),
		attached: NewMemTable[int, Attachment](),
		cidrs:    NewMemTable[netip.Prefix, identity.NumericIdentity](),
	}
}

// IPCache implements Datapath.
func (m *Memory) IPCache() Table[netip.Prefix, IPCacheEntry] { return m.ipcache }

// Peers implements Datapath.
func (m *Memory) Peers() Table[string, Peer] { return m.peers }

// Services implements Datapath.
func (m *Memory) Services() Table[ServiceKey, Service] { return m.services }

// Policies implements Datapath.
func (m *Memory) Policies() Table[uint16, EndpointPolicy] { return m.policies }

// Attachments implements Datapath.
func (m *Memory) Attachments() Table[int, Attachment] { return m.attached }

// CIDRIdentities implements Datapath.
func (m *Memory) CIDRIdentities() Table[netip.Prefix, identity.NumericIdentity] { return m.cidrs }

// MemIPCache gives tests the concrete table (fault injection, counters).
func (m *Memory) MemIPCache() *MemTable[netip.Prefix, IPCacheEntry] { return m.ipcache }

// MemTable is an in-memory Table that counts operations and can be told to
// fail, for tests of reconcilers.
type MemTable[K comparable, V any] struct {
	mu      sync.Mutex // guards everything below
	m       map[K]V
	updates int
	deletes int
	failing func(K) error
}

// NewMemTable returns an empty table.
func NewMemTable[K comparable, V any]() *MemTable[K, V] { return &MemTable[K, V]{m: map[K]V{}} }

// Update implements Table.
func (t *MemTable[K, V]) Update(_ context.Context, k K, v V) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failing != nil {
		if err := t.failing(k); err != nil {
			return err
		}
	}
	if old, ok := t.m[k]; ok && reflect.DeepEqual(old, v) {
		return nil
	}
	t.m[k] = v
	t.updates++
	return nil
}

// Delete implements Table.
func (t *MemTable[K, V]) Delete(_ context.Context, k K) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failing != nil {
		if err := t.failing(k); err != nil {
			return err
		}
	}
	if _, ok := t.m[k]; ok {
		delete(t.m, k)
		t.deletes++
	}
	return nil
}

// List implements Table.
func (t *MemTable[K, V]) List(context.Context) (map[K]V, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.m), nil
}

// FailWith makes operations on keys for which f returns an error fail (nil
// f: none fail).
func (t *MemTable[K, V]) FailWith(f func(K) error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failing = f
}

// Ops returns how many effective updates and deletes happened.
func (t *MemTable[K, V]) Ops() (updates, deletes int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.updates, t.deletes
}
