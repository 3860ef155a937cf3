package kvstoremesh

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// mirror is the cache of one peer in the local etcd: one SyncStore per
// kind, and the peer's cluster config. A drain stops it; the next
// connection to the peer starts a new one.
type mirror struct {
	c       *Cache
	cluster string
	stores  map[remote.Kind]*kvstore.SyncStore
	ctx     context.Context // ends with stop
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the stores and the config, until stop
	// written: the cluster config is in the local etcd.
	written atomic.Bool

	mu      sync.Mutex // guards id, max, stopCfg, cfgDone
	id      identity.ClusterID
	max     uint32
	stopCfg context.CancelFunc
	cfgDone chan struct{}
}

// newMirror starts the stores of cluster; the caller holds c.mu and
// c.ctx is set.
func newMirror(c *Cache, cluster string) (*mirror, error) {
	p := c.paths(cluster)
	ctx, cancel := context.WithCancel(c.ctx)
	m := &mirror{c: c, cluster: cluster, stores: map[remote.Kind]*kvstore.SyncStore{}, cancel: cancel}
	for _, k := range []struct {
		kind           remote.Kind
		prefix, synced string
	}{
		{remote.KindNodes, p.ClusterNodesPrefix(cluster), p.NodesPrefix()},
		{remote.KindIdentities, p.IdentityIDPrefix(), p.IdentitiesPrefix()},
		{remote.KindIPs, p.IPDefaultPrefix(), p.IPPrefix()},
		{remote.KindServices, p.ClusterServicesPrefix(cluster), p.ServicesPrefix()},
	} {
		s, err := kvstore.NewSyncStore(c.cfg.Local, kvstore.SyncStoreConfig{
			Prefix: k.prefix, SyncedKey: p.Synced(cluster, k.synced), LeaseTTL: c.cfg.LeaseTTL,
			Backoff: c.cfg.Backoff, Logger: c.log.With("peer", cluster),
		})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("cache of %s: %w", cluster, err)
		}
		m.stores[k.kind] = s
	}
	m.ctx = ctx
	for _, s := range m.stores {
		m.wg.Go(func() { _ = s.Run(ctx) })
	}
	return m, nil
}

// publish keeps the peer's cluster config in the local etcd: its ID and
// max connected clusters, with synced canaries and the "cached"
// capability, re-written if deleted or changed.
func (m *mirror) publish(id identity.ClusterID, maxConnected uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopCfg != nil && m.id == id && m.max == maxConnected {
		return
	}
	if m.stopCfg != nil {
		m.stopCfg()
		<-m.cfgDone
	}
	m.id, m.max = id, maxConnected
	m.written.Store(false)
	cc := schema.ClusterConfig{ID: uint32(id), Capabilities: schema.ClusterConfigCapabilities{
		SyncedCanaries: true, Cached: true, MaxConnectedClusters: maxConnected}}
	ctx, cancel := context.WithCancel(m.ctx)
	done := make(chan struct{})
	m.stopCfg, m.cfgDone = cancel, done
	m.wg.Go(func() {
		defer close(done)
		_ = kvstore.RunClusterConfig(ctx, m.c.cfg.Local, m.c.cfg.Paths, m.cluster, cc, m.c.log.With("peer", m.cluster), func() { m.written.Store(true) })
	})
}

// published reports whether the peer's cluster config was written.
func (m *mirror) published() bool { return m.written.Load() }

// stop stops the stores and the config, and waits for them.
func (m *mirror) stop() {
	m.cancel()
	m.wg.Wait()
}
