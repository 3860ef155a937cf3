package kvstoremesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/agent/peers"
	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Config of the cache.
type Config struct {
	// Local is the local etcd, with a user that may write the cache, the
	// cluster configs and the synced markers (the admin).
	Local *kvstore.Client
	Paths schema.Paths
	// The local cluster.
	LocalName            string
	LocalID              identity.ClusterID
	MaxConnectedClusters uint32
	// MeshConfigDir holds one etcd client config per peer, as the agents'
	// (agent/peers).
	MeshConfigDir string
	// PollInterval of the directory (default 1s).
	PollInterval time.Duration
	// CacheTTL revokes a peer's cached state once its heartbeat has not
	// changed for this long (remote.Config.CacheTTL); zero keeps the last
	// known state of a lost peer.
	CacheTTL time.Duration
	// ProbeInterval of every peer's liveness probe
	// (remote.Config.ProbeInterval; 0: the default).
	ProbeInterval time.Duration
	// LeaseTTL of the cached keys (default 15m): how long they outlive a
	// cache that stopped.
	LeaseTTL time.Duration
	Backoff  backoff.Backoff
	Log      *slog.Logger
	// Registerer receives the cache's metrics (optional).
	Registerer prometheus.Registerer
	// LocalNodes lists the local cluster's nodes as exported (optional):
	// no peer may claim their pod CIDRs, addresses or WireGuard keys.
	LocalNodes func() []schema.Node
}

// Cache mirrors every peer's validated state into the local etcd. It is the
// remote.Sink (and remote.Observer) of the peers it connects to.
type Cache struct {
	cfg      Config
	log      *slog.Logger
	peers    *peers.Manager
	claims   *claims
	rejected *prometheus.CounterVec
	encodeErrors,
	drains prometheus.Counter

	mu      sync.Mutex // guards ctx, mirrors
	ctx     context.Context
	mirrors map[string]*mirror
}

// New returns the cache; nothing happens before Run.
func New(cfg Config) (*Cache, error) {
	if cfg.Local == nil {
		return nil, errors.New("kvstoremesh: no local etcd client")
	}
	if err := identity.ValidateClusterName(cfg.LocalName); err != nil {
		return nil, fmt.Errorf("kvstoremesh: local cluster name: %w", err)
	}
	if cfg.MeshConfigDir == "" {
		return nil, errors.New("kvstoremesh: no mesh configuration directory: set the directory of the peers' etcd configs")
	}
	if _, err := identity.NewLayout(cfg.MaxConnectedClusters); err != nil {
		return nil, fmt.Errorf("kvstoremesh: %w", err)
	}
	if cfg.CacheTTL < 0 {
		return nil, fmt.Errorf("kvstoremesh: cache TTL %v: must be 0 (keep a lost peer's last state) or positive", cfg.CacheTTL)
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 15 * time.Minute
	}
	if cfg.LeaseTTL < 2*time.Second {
		return nil, fmt.Errorf("kvstoremesh: lease TTL %v: below etcd's minimum of 2s", cfg.LeaseTTL)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "kvstoremesh")
	c := &Cache{cfg: cfg, log: log, mirrors: map[string]*mirror{},
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clustermesh_apiserver_cache_rejected_total",
			Help: "Entries from peer clusters the cache of remote state rejected by validation, by cluster, kind and reason.",
		}, []string{"cluster", "kind", "reason"}),
		encodeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clustermesh_apiserver_cache_encode_errors_total",
			Help: "Validated entries of peer clusters the cache could not encode (not cached).",
		}),
		drains: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clustermesh_apiserver_cache_drains_total",
			Help: "Peers whose cached state was drained (cluster ID change, revocation, removal).",
		}),
	}
	if cfg.Registerer != nil {
		for _, m := range []prometheus.Collector{c.rejected, c.encodeErrors, c.drains} {
			if err := cfg.Registerer.Register(m); err != nil {
				return nil, fmt.Errorf("kvstoremesh: register metrics: %w", err)
			}
		}
	}
	c.claims = newClaims(cfg.LocalName, cfg.LocalNodes)
	c.peers = peers.New(peers.Config{
		Dir: cfg.MeshConfigDir, PollInterval: cfg.PollInterval, LocalName: cfg.LocalName, LocalID: cfg.LocalID,
		MaxConnectedClusters: cfg.MaxConnectedClusters, Paths: cfg.Paths, Sink: c, Backoff: cfg.Backoff,
		Log: log, Rejected: c.rejected, CacheTTL: cfg.CacheTTL, Claims: c.claims, ProbeInterval: cfg.ProbeInterval,
	})
	c.claims.trusts = c.peers.Trusts
	return c, nil
}

// Run connects to the peers and mirrors them until ctx ends, then stops
// every goroutine it started and returns. The cached keys stay.
func (c *Cache) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.ctx != nil {
		c.mu.Unlock()
		return errors.New("kvstoremesh: Run called twice")
	}
	c.ctx = ctx
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		ms := c.mirrors
		c.mirrors = map[string]*mirror{}
		c.mu.Unlock()
		for _, m := range ms {
			m.stop()
		}
	}()
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.peers.Run(ctx) })
	wg.Go(func() { c.collectGarbage(ctx) })
	wg.Go(func() { c.publishStatus(ctx) })
	wg.Wait()
	return ctx.Err()
}

// mirror returns the mirror of cluster, started on first use; nil for the
// local cluster, or once Run ended.
func (c *Cache) mirror(cluster string) *mirror {
	if cluster == c.cfg.LocalName {
		c.log.Error("a peer uses the local cluster's name: nothing of it is cached", "peer", cluster)
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.mirrors[cluster]; m != nil {
		return m
	}
	if c.ctx == nil || c.ctx.Err() != nil {
		return nil
	}
	m, err := newMirror(c, cluster)
	if err != nil {
		c.log.Error("start the cache of a peer", "peer", cluster, "error", err)
		return nil
	}
	c.mirrors[cluster] = m
	return m
}

func (c *Cache) put(cluster string, kind remote.Kind, key string, value func() ([]byte, error)) {
	m := c.mirror(cluster)
	if m == nil {
		return
	}
	b, err := value()
	if err == nil {
		err = m.stores[kind].Upsert(key, b)
	}
	if err != nil {
		c.encodeErrors.Inc()
		c.log.Warn("cannot cache a validated entry", "peer", cluster, "kind", kind, "key", key, "error", err)
	}
}

func (c *Cache) del(cluster string, kind remote.Kind, key string) {
	c.mu.Lock()
	m := c.mirrors[cluster]
	c.mu.Unlock()
	if m != nil {
		m.stores[kind].Delete(key)
	}
}

func (c *Cache) paths(cluster string) schema.Paths { return c.cfg.Paths.Cache(cluster) }

// UpsertNode implements remote.Sink.
func (c *Cache) UpsertNode(cluster string, n schema.Node) {
	c.claims.setNode(cluster, n)
	c.put(cluster, remote.KindNodes, c.paths(cluster).Node(cluster, n.Name), n.Marshal)
}

// DeleteNode implements remote.Sink.
func (c *Cache) DeleteNode(cluster, name string) {
	c.claims.deleteNode(cluster, name)
	c.del(cluster, remote.KindNodes, c.paths(cluster).Node(cluster, name))
}

// UpsertIdentity implements remote.Sink.
func (c *Cache) UpsertIdentity(cluster string, id identity.NumericIdentity, labels identity.Labels) {
	c.put(cluster, remote.KindIdentities, c.paths(cluster).Identity(uint32(id)), func() ([]byte, error) {
		return []byte(labels.SortedKVStoreString()), nil
	})
}

// DeleteIdentity implements remote.Sink.
func (c *Cache) DeleteIdentity(cluster string, id identity.NumericIdentity) {
	c.del(cluster, remote.KindIdentities, c.paths(cluster).Identity(uint32(id)))
}

// ipKey is the key of an ip entry: <ip> for a host prefix, as Cilium
// writes them, <ip>/<len> otherwise.
func ipKey(p schema.Paths, prefix netip.Prefix) string {
	if prefix.IsSingleIP() {
		return p.IP(prefix.Addr())
	}
	return p.IPCIDR(prefix)
}

// UpsertIP implements remote.Sink.
func (c *Cache) UpsertIP(cluster string, prefix netip.Prefix, e schema.IPEntry) {
	c.put(cluster, remote.KindIPs, ipKey(c.paths(cluster), prefix), e.Marshal)
}

// DeleteIP implements remote.Sink.
func (c *Cache) DeleteIP(cluster string, prefix netip.Prefix) {
	c.del(cluster, remote.KindIPs, ipKey(c.paths(cluster), prefix))
}

// UpsertService implements remote.Sink.
func (c *Cache) UpsertService(cluster string, s schema.ClusterService) {
	c.put(cluster, remote.KindServices, c.paths(cluster).Service(cluster, s.Namespace, s.Name), s.Marshal)
}

// DeleteService implements remote.Sink.
func (c *Cache) DeleteService(cluster, namespace, name string) {
	c.del(cluster, remote.KindServices, c.paths(cluster).Service(cluster, namespace, name))
}

// Adopted implements remote.Observer: the peer's config was validated, so
// the cache announces the peer to the local agents, with the "cached"
// capability.
func (c *Cache) Adopted(cluster string, id identity.ClusterID, maxConnectedClusters uint32) {
	if m := c.mirror(cluster); m != nil {
		m.publish(id, maxConnectedClusters)
	}
}

// KindSynced implements remote.Observer: the kind's synced marker is
// written once every key of the initial list is in the local etcd.
func (c *Cache) KindSynced(cluster string, kind remote.Kind) {
	if m := c.mirror(cluster); m != nil {
		m.stores[kind].Synced()
	}
}

// Drain implements remote.Sink: the peer's cached keys and synced markers
// are deleted (its cluster config stays while it is configured, so that
// agents watching it see the deletes). It retries until it succeeded or
// the cache stops.
func (c *Cache) Drain(cluster string) {
	c.claims.drain(cluster)
	if cluster == c.cfg.LocalName {
		return
	}
	c.mu.Lock()
	m := c.mirrors[cluster]
	delete(c.mirrors, cluster)
	ctx := c.ctx
	c.mu.Unlock()
	if m != nil {
		m.stop() // nothing of the old mirror is written after the drain
	}
	if ctx == nil {
		return
	}
	c.drains.Inc()
	c.log.Info("draining the cached state of a peer", "peer", cluster)
	bo := c.cfg.Backoff
	for {
		err := c.deleteCached(ctx, cluster)
		if err == nil {
			return
		}
		c.log.Warn("drain the cached state of a peer, retrying", "peer", cluster, "error", err)
		if bo.Wait(ctx) != nil {
			return
		}
	}
}

// deleteCached deletes the cache of cluster and its synced markers in one
// transaction.
func (c *Cache) deleteCached(ctx context.Context, cluster string) error {
	p := c.paths(cluster)
	var ops []clientv3.Op
	for _, pre := range []string{p.ClusterNodesPrefix(cluster), p.IdentityIDPrefix(), p.IPDefaultPrefix(),
		p.ClusterServicesPrefix(cluster), p.SyncedPrefix(cluster)} {
		ops = append(ops, clientv3.OpDelete(pre, clientv3.WithPrefix()))
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.cfg.Local.Etcd().Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("delete the cache of %s: %w", cluster, err)
	}
	return nil
}

// collectGarbage deletes, once the mesh configuration directory was read,
// the cluster configs and caches of clusters that are not configured (any
// more): peers removed while the cache did not run, or whose file went.
func (c *Cache) collectGarbage(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-c.peers.Scanned():
	}
	interval := c.cfg.PollInterval
	if interval <= 0 {
		interval = time.Second
	}
	for {
		if err := c.collectOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("remove the cache of peers no longer configured", "error", err)
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (c *Cache) collectOnce(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pre := c.cfg.Paths.ClusterConfigPrefix()
	resp, err := c.cfg.Local.Etcd().Get(rctx, pre, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("list %s: %w", pre, err)
	}
	configured := c.peers.Trusts()
	for _, kv := range resp.Kvs {
		cluster, err := c.cfg.Paths.ParseClusterConfigKey(string(kv.Key))
		if err != nil || cluster == c.cfg.LocalName {
			continue
		}
		if _, ok := configured[cluster]; ok {
			continue
		}
		if err := c.removeUnconfigured(rctx, cluster, kv.ModRevision); err != nil {
			return err
		}
	}
	return nil
}

// removeUnconfigured deletes the cache, the synced markers and the cluster
// config (unless rewritten since rev) of a cluster that is not configured.
// It holds mu, so that no mirror of the cluster starts meanwhile, and
// checks the configuration again under it (a peer's trust is published
// before it starts).
func (c *Cache) removeUnconfigured(ctx context.Context, cluster string, rev int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.peers.Trusts()[cluster]; ok {
		return nil
	}
	if _, running := c.mirrors[cluster]; running {
		return nil // its file went a moment ago: the manager drains it
	}
	c.log.Info("removing the cache of a peer that is no longer configured", "peer", cluster)
	if err := c.deleteCached(ctx, cluster); err != nil {
		return err
	}
	key := c.cfg.Paths.ClusterConfig(cluster)
	if _, err := c.cfg.Local.Etcd().Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key)).Commit(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// KindStatus is the cache of one kind of a peer.
type KindStatus struct {
	// Synced: the kind's synced marker is in the local etcd.
	Synced bool `json:"synced"`
	// Queued keys are not yet written as desired.
	Queued    int    `json:"queued"`
	Writes    uint64 `json:"writes"`
	LastError string `json:"lastError,omitempty"`
}

// PeerStatus is one peer as the cache sees it: the connection (as an
// agent's status shows it) and what is in the local etcd.
type PeerStatus struct {
	remote.Status
	// Published: the peer's cluster config (with the "cached" capability)
	// is in the local etcd.
	Published bool                       `json:"published"`
	Cache     map[remote.Kind]KindStatus `json:"cache"`
}

// Status returns every configured peer's status, sorted by name.
func (c *Cache) Status() []PeerStatus {
	var out []PeerStatus
	for _, st := range c.peers.Status() {
		ps := PeerStatus{Status: st, Cache: map[remote.Kind]KindStatus{}}
		c.mu.Lock()
		m := c.mirrors[st.Name]
		c.mu.Unlock()
		if m != nil {
			ps.Published = m.published()
			for _, k := range remote.Kinds {
				s := m.stores[k].Status()
				ps.Cache[k] = KindStatus{Synced: s.Synced, Queued: s.Queued, Writes: s.Writes, LastError: s.LastError}
			}
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Synced reports whether every configured peer is ready and its cache
// synced: the local agents can read all of it.
func (c *Cache) Synced() bool {
	for _, st := range c.Status() {
		if !st.Ready || !st.Published {
			return false
		}
		for _, k := range remote.Kinds {
			if !st.Cache[k].Synced {
				return false
			}
		}
	}
	return true
}
