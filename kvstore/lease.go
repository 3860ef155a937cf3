package kvstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseManager hands out etcd leases shared by at most maxKeys keys each and
// keeps them alive. When a lease is lost (expired, revoked, or found missing
// after a failed write) the keys attached to it are handed to onLost so that
// the owner writes them again.
type leaseManager struct {
	cli     *clientv3.Client
	ttl     time.Duration
	maxKeys int
	onLost  func(keys []string)

	// ctx bounds the keepalive goroutines, which wg tracks.
	ctx context.Context
	wg  sync.WaitGroup

	grantMu sync.Mutex // serializes grants, so that workers share leases
	mu      sync.Mutex // guards current, leases, byKey; never held across a request
	current clientv3.LeaseID
	leases  map[clientv3.LeaseID]*leaseState
	byKey   map[string]clientv3.LeaseID
}

type leaseState struct {
	n      int // keys attached
	cancel context.CancelFunc
}

func newLeaseManager(ctx context.Context, cli *clientv3.Client, ttl time.Duration, maxKeys int, onLost func([]string)) *leaseManager {
	return &leaseManager{
		cli: cli, ttl: ttl, maxKeys: maxKeys, onLost: onLost, ctx: ctx,
		leases: map[clientv3.LeaseID]*leaseState{},
		byKey:  map[string]clientv3.LeaseID{},
	}
}

// Attach returns the lease key must be written with, granting a new lease
// when the current one is full. The grant happens outside mu so that a slow
// or unreachable etcd never blocks the callers of Count, Detach or lost.
func (m *leaseManager) Attach(ctx context.Context, key string) (clientv3.LeaseID, error) {
	if id, ok := m.tryAttach(key); ok {
		return id, nil
	}
	m.grantMu.Lock()
	defer m.grantMu.Unlock()
	if id, ok := m.tryAttach(key); ok { // another worker granted meanwhile
		return id, nil
	}
	resp, err := m.cli.Grant(ctx, int64(m.ttl.Seconds()))
	if err != nil {
		return 0, fmt.Errorf("grant etcd lease: %w", err)
	}
	kctx, cancel := context.WithCancel(m.ctx)
	ch, err := m.cli.KeepAlive(kctx, resp.ID)
	if err != nil {
		cancel()
		return 0, fmt.Errorf("keep etcd lease %x alive: %w", resp.ID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.current = resp.ID
	m.leases[resp.ID] = &leaseState{n: 1, cancel: cancel}
	m.byKey[key] = resp.ID
	m.wg.Go(func() { m.keepAlive(kctx, resp.ID, ch) })
	return resp.ID, nil
}

// tryAttach attaches key to its lease or to the current lease if it has room.
func (m *leaseManager) tryAttach(key string) (clientv3.LeaseID, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.byKey[key]; ok {
		return id, true
	}
	cur := m.leases[m.current]
	if cur == nil || cur.n >= m.maxKeys {
		return 0, false
	}
	cur.n++
	m.byKey[key] = m.current
	return m.current, true
}

// Detach forgets key (it was deleted).
func (m *leaseManager) Detach(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.byKey[key]; ok {
		delete(m.byKey, key)
		if st := m.leases[id]; st != nil {
			st.n--
		}
	}
}

func (m *leaseManager) keepAlive(ctx context.Context, id clientv3.LeaseID, ch <-chan *clientv3.LeaseKeepAliveResponse) {
	for range ch { //nolint:revive // draining the channel is the keepalive
	}
	if ctx.Err() == nil {
		m.lost(id)
	}
}

// CheckLost asks etcd whether each lease still exists and handles the lost
// ones. It is called after a write failed with "lease not found".
func (m *leaseManager) CheckLost(ctx context.Context, ids []clientv3.LeaseID) error {
	for _, id := range ids {
		resp, err := m.cli.TimeToLive(ctx, id)
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Errorf("check etcd lease %x: %w", id, err)
		}
		if err != nil || resp.TTL <= 0 {
			m.lost(id)
		}
	}
	return nil
}

func (m *leaseManager) lost(id clientv3.LeaseID) {
	m.mu.Lock()
	st, ok := m.leases[id]
	if !ok {
		m.mu.Unlock()
		return
	}
	delete(m.leases, id)
	if m.current == id {
		m.current = 0
	}
	// Losses are rare: a scan beats keeping a key set per lease.
	keys := make([]string, 0, st.n)
	for k, kid := range m.byKey {
		if kid == id {
			keys = append(keys, k)
			delete(m.byKey, k)
		}
	}
	m.mu.Unlock()
	st.cancel()
	m.onLost(keys)
}

// Count returns the number of live leases.
func (m *leaseManager) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.leases)
}

// Wait waits for the keepalive goroutines after the manager's ctx ended.
func (m *leaseManager) Wait() { m.wg.Wait() }
