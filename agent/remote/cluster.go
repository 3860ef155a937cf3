package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/internal/clock"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Config of a connection to one peer cluster.
type Config struct {
	// Name of the peer (its config file's name).
	Name   string
	Client kvstore.ClientConfig
	Paths  schema.Paths
	// The local cluster.
	LocalName            string
	LocalID              identity.ClusterID
	MaxConnectedClusters uint32
	Registry             *Registry
	Sink                 Sink
	Backoff              backoff.Backoff
	Log                  *slog.Logger
	// Rejected counts rejected entries by cluster, kind and reason (optional).
	Rejected *prometheus.CounterVec
	// CacheTTL, when positive, revokes the peer's state once its heartbeat
	// has not changed for this long, on our clock (the peer is unreachable,
	// or its exporter stopped): the state is drained and read again from
	// scratch when the peer is back. Zero keeps the last known state
	// forever. It must exceed the peers' heartbeat interval (1m by default).
	CacheTTL time.Duration
	// Clock for the heartbeat and the cache TTL (default: real).
	Clock clock.Clock
	// Trust is what connect recorded of the peer (pinned cluster ID, pod
	// CIDRs). A pinned ID is the only one the peer may announce, and no
	// other peer may hold it (see Registry).
	Trust Trust
	// Claims is what the rest of the mesh holds (optional).
	Claims Claims
	// ThroughCache: Client is the local etcd, where the local
	// clustermesh-apiserver caches the peer (clustermesh-apiserver/
	// kvstoremesh), not the peer's own etcd. The peer's cluster config
	// there must then have the "cached" capability.
	ThroughCache bool
	// ProbeInterval: how often the connection reads the peer's heartbeat
	// key to tell that the peer answers (default DefaultProbeInterval);
	// two intervals without an answer report it unreachable (probe.go).
	ProbeInterval time.Duration
}

// Status of a peer.
type Status struct {
	Name            string            `json:"name"`
	Connected       bool              `json:"connected"`
	Ready           bool              `json:"ready"`
	ClusterID       uint32            `json:"clusterID,omitempty"`
	Synced          map[Kind]bool     `json:"synced"`
	Entries         map[Kind]int      `json:"entries"`
	Rejected        map[string]uint64 `json:"rejected,omitempty"`
	Failures        uint64            `json:"failures"`
	Revoked         bool              `json:"revoked,omitempty"`
	LastFailure     string            `json:"lastFailure,omitempty"`
	LastFailureTime time.Time         `json:"lastFailureTime,omitzero"`
	// LastContact is when the peer last answered a liveness probe.
	LastContact time.Time `json:"lastContact,omitzero"`
	// Waiting says why a revoked peer's state is not read again yet.
	Waiting string `json:"waiting,omitempty"`
	// Cached: the peer's state is read from a cache (its cluster config
	// has the "cached" capability).
	Cached bool `json:"cached,omitempty"`
	// ThroughCache: the peer is read from the local etcd's cache rather
	// than from its own etcd (Config.ThroughCache).
	ThroughCache bool `json:"throughCache,omitempty"`
	// NoServices says why the peer's services are not read.
	NoServices string `json:"noServices,omitempty"`
}

const noServicesMsg = `the peer exports no ClusterService (endpointSlicesExportMode "endpointslices-only")`

// Cluster is the connection to one peer.
type Cluster struct {
	cfg    Config
	layout identity.Layout
	log    *slog.Logger
	rej    *rejections

	mu     sync.Mutex // guards status, v, id, revokedAt, awaitingHeartbeat
	status Status
	v      *validator
	id     identity.ClusterID
	// revokedAt is the peer's heartbeat at the last revocation; while
	// awaitingHeartbeat, nothing is read before the heartbeat moved.
	revokedAt         time.Time
	awaitingHeartbeat bool
}

var (
	errConfigChanged = errors.New("the peer's cluster config changed")
	errRevoked       = errors.New("the peer's heartbeat is older than the cache TTL: its state was revoked")
)

// stableAfter is how long a connection must stay up for the reconnection
// that follows it to start again from the backoff's first delay.
const stableAfter = 30 * time.Second

// New returns the connection to a peer; nothing happens before Run.
func New(cfg Config) (*Cluster, error) {
	layout, err := identity.NewLayout(cfg.MaxConnectedClusters)
	if err != nil {
		return nil, err
	}
	if err := identity.ValidateClusterName(cfg.Name); err != nil {
		return nil, fmt.Errorf("peer name (the config file's name): %w", err)
	}
	if pin := cfg.Trust.ClusterID; pin != 0 {
		if err := layout.ValidateClusterID(pin); err != nil {
			return nil, fmt.Errorf("peer %s: cluster-id %d recorded in its config file: %w: run `clustermesh connect` again to record the peer's ID", cfg.Name, pin, err)
		}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("peer", cfg.Name)
	return &Cluster{cfg: cfg, layout: layout, log: log, rej: newRejections(cfg.Name, log, cfg.Rejected),
		status: Status{Name: cfg.Name, Synced: map[Kind]bool{}, Entries: map[Kind]int{}, ThroughCache: cfg.ThroughCache}}, nil
}

// Status returns a snapshot of the peer's status.
func (c *Cluster) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.status
	st.Synced, st.Entries = map[Kind]bool{}, map[Kind]int{}
	for _, k := range Kinds {
		st.Synced[k] = c.status.Synced[k]
		if c.v != nil {
			st.Entries[k] = c.v.entries(k)
		}
	}
	st.Rejected = c.rej.snapshot()
	return st
}

// Run keeps the peer connected until ctx ends, reconnecting with backoff:
// after a failure, and after a change of the peer's cluster config (a peer
// flipping it cannot make us reconnect and log at its pace). The backoff
// starts again from its first delay only after a connection stayed up for
// stableAfter. The peer's state stays in the sink when the connection is
// lost; the owner drains it when the peer is removed.
func (c *Cluster) Run(ctx context.Context) error {
	reg := c.cfg.Registry
	defer reg.Release(c.cfg.Name)
	if pin := c.cfg.Trust.ClusterID; pin != 0 {
		reg.Pin(c.cfg.Name, pin) // before connecting: no other peer takes the ID meanwhile
		defer reg.Unpin(c.cfg.Name)
	}
	bo, clk := c.cfg.Backoff, c.clock()
	for ctx.Err() == nil {
		up, err := c.connectAndServe(ctx)
		if ctx.Err() != nil {
			break
		}
		if !up.IsZero() && clk.Now().Sub(up) >= stableAfter {
			bo.Reset()
		}
		c.mu.Lock()
		c.status.Connected = false
		c.status.Failures++
		c.status.LastFailure, c.status.LastFailureTime = err.Error(), time.Now()
		c.mu.Unlock()
		// One line per backoff step, whatever the number of changes the
		// peer made meanwhile.
		delay := bo.Next()
		if errors.Is(err, errConfigChanged) {
			c.log.Info("peer's cluster config changed: validating it again", "retry-in", delay, "attempt", bo.Attempts())
		} else {
			c.log.Warn("peer connection failed, retrying", "error", err, "retry-in", delay, "attempt", bo.Attempts())
		}
		t := clk.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
	}
	return ctx.Err()
}

// connectAndServe serves one connection to the peer until it fails, and
// returns when it started to serve (zero if it never did).
func (c *Cluster) connectAndServe(ctx context.Context) (up time.Time, err error) {
	cli, err := kvstore.Connect(ctx, c.cfg.Client)
	if err != nil {
		return time.Time{}, fmt.Errorf("connect to %s: %w", c.cfg.Name, err)
	}
	defer cli.Close()
	if err := c.awaitHeartbeat(ctx, cli); err != nil {
		return time.Time{}, err
	}
	cc, err := kvstore.GetClusterConfig(ctx, cli, c.cfg.Paths, c.cfg.Name)
	switch {
	case err != nil && c.cfg.ThroughCache:
		return time.Time{}, fmt.Errorf("peer %s through the local cache at %v: %w (hint: the local clustermesh-apiserver publishes a peer's config once it validated it: check that its --cache is on, that its --mesh-config-dir has a file for %s, and its /v1/cache status)",
			c.cfg.Name, c.cfg.Client.Endpoints, err, c.cfg.Name)
	case err != nil:
		return time.Time{}, err
	case c.cfg.ThroughCache && !cc.Capabilities.Cached:
		return time.Time{}, fmt.Errorf("%w: peer %s is read through the local cache at %v, but its cluster config there does not have the \"cached\" capability: is that etcd the local clustermesh-apiserver's?",
			kvstore.ErrClusterConfig, c.cfg.Name, c.cfg.Client.Endpoints)
	}
	id, hold, err := c.checkConfig(cc)
	if err != nil {
		return time.Time{}, err
	}
	// A cluster config with the "cached" capability announces the
	// peer's state under the cache layout (a KVStoreMesh-style cache in
	// the etcd we read); one that exports no ClusterService
	// (endpointSlicesExportMode "endpointslices-only") gets its services
	// drained and reported synced, as Cilium does.
	p := c.cfg.Paths
	if cc.Capabilities.Cached {
		p = p.Cache(c.cfg.Name)
	}
	watchServices := cc.Capabilities.EndpointSlicesExportMode.ExportsServices()
	v := c.adopt(id, p)
	if o, ok := c.cfg.Sink.(Observer); ok {
		o.Adopted(c.cfg.Name, id, cc.EffectiveMaxConnectedClusters())
	}
	up = c.clock().Now()
	c.mu.Lock()
	c.status.Connected, c.status.Revoked = true, false
	c.status.LastContact = time.Now() // the probe's clock, which is real
	c.status.ClusterID = uint32(id)
	c.status.Cached = cc.Capabilities.Cached
	c.status.NoServices = ""
	if !watchServices {
		c.status.NoServices = noServicesMsg
	}
	c.mu.Unlock()
	c.log.Info("connected to peer", "cluster-id", id, "synced-canaries", cc.Capabilities.SyncedCanaries,
		"cached", cc.Capabilities.Cached, "endpoint-slices-export-mode", string(cc.Capabilities.EndpointSlicesExportMode))

	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop := func() { cancel(); wg.Wait() } // stop the stores, then wait for them
	stores := map[Kind]*kvstore.WatchStore{}
	defer func() {
		stop()
		// The next connection's stores adopt these keys, so that what
		// the peer deleted meanwhile is reported deleted. A kind whose
		// store did not start keeps its previous store's keys.
		if v.prev == nil {
			v.prev = map[Kind]*kvstore.WatchStore{}
		}
		maps.Copy(v.prev, stores)
	}()
	nodesSynced, nodesOnce := make(chan struct{}), &sync.Once{}
	for _, k := range []struct {
		kind           Kind
		prefix, synced string
		up             func(string, []byte)
		del            func(string)
	}{
		{KindNodes, p.ClusterNodesPrefix(c.cfg.Name), p.NodesPrefix(), v.upsertNode, v.deleteNode},
		{KindIdentities, p.IdentityIDPrefix(), p.IdentitiesPrefix(), v.upsertIdentity, v.deleteIdentity},
		{KindIPs, p.IPDefaultPrefix(), p.IPPrefix(), v.upsertIP, v.deleteIP},
		{KindServices, p.ClusterServicesPrefix(c.cfg.Name), p.ServicesPrefix(), v.upsertService, v.deleteService},
	} {
		if k.kind == KindServices && !watchServices {
			c.log.Warn("peer exports no ClusterService (endpointSlicesExportMode \"endpointslices-only\"): " +
				"its global Services contribute no backends here; configure the peer to export services (Cilium: --clustermesh-service-v2=prefer-legacy or prefer-endpointslice)")
			v.drainServices()
			delete(v.prev, KindServices) // drained: nothing to adopt
			c.setSynced(KindServices)
			continue
		}
		wcfg := kvstore.WatchStoreConfig{Prefix: k.prefix, Keys: keyCodecs[k.kind], Backoff: c.cfg.Backoff, Logger: c.log}
		if cc.Capabilities.SyncedCanaries {
			wcfg.SyncedKey = p.Synced(c.cfg.Name, k.synced)
		}
		kind := k.kind
		synced := func() {
			c.setSynced(kind)
			if kind == KindNodes {
				nodesOnce.Do(func() { close(nodesSynced) })
			}
		}
		h := handler{up: k.up, del: k.del, synced: synced}
		if f, ok := c.cfg.Sink.(Flusher); ok {
			h.flush = f.Flush
		}
		ws, err := kvstore.NewWatchStore(cli, wcfg, h)
		if err != nil {
			return up, err
		}
		if prev := v.prev[kind]; prev != nil {
			if err := ws.Adopt(prev); err != nil {
				return up, err
			}
		}
		stores[kind] = ws
		wg.Go(func() {
			// ip entries and service backends are checked against the
			// nodes' pod CIDRs: read them once the nodes are known, so
			// that no honest initial entry is held back.
			if kind == KindIPs || kind == KindServices {
				select {
				case <-sctx.Done():
					return
				case <-nodesSynced:
				}
			}
			_ = ws.Run(sctx)
		})
	}
	var ( // written by the goroutines below, read after stop (wg.Wait orders them)
		stale            time.Time
		revoked, evicted bool
	)
	if c.cfg.CacheTTL > 0 {
		wg.Go(func() {
			stale, revoked = c.staleHeartbeat(sctx, cli)
			if revoked {
				cancel()
			}
		})
	}
	wg.Go(func() { c.probe(sctx, cli) })
	wg.Go(func() {
		select {
		case <-sctx.Done():
		case <-hold.Lost():
			evicted = true
			cancel()
		}
	})
	err = c.watchConfig(sctx, cli, cc)
	stop() // nothing the peer sends from here on is accepted
	switch {
	case ctx.Err() != nil: // the agent stops or the peer is removed: its owner decides
		return up, ctx.Err()
	case revoked:
		c.revoke(stale)
		return up, errRevoked
	case evicted:
		c.forget()
		return up, fmt.Errorf("%w: peer %s held cluster ID %d, which the config of peer %s pins (`clustermesh connect` recorded it): everything %s announced was drained; give %s its own ID",
			ErrClusterIDPinned, c.cfg.Name, id, hold.TakenBy(), c.cfg.Name, c.cfg.Name)
	}
	return up, err
}

// checkConfig validates the peer's cluster config against the local one
// and against the ID connect recorded, and claims the peer's ID.
func (c *Cluster) checkConfig(cc schema.ClusterConfig) (identity.ClusterID, *Hold, error) {
	id := identity.ClusterID(cc.ID)
	if pin := c.cfg.Trust.ClusterID; pin != 0 && id != pin {
		return 0, nil, fmt.Errorf("%w: %w: peer %s announces cluster ID %d but `clustermesh connect` recorded %d: nothing of it is accepted; "+
			"if the peer was reinstalled with a new ID, run `clustermesh connect` for it again, otherwise check which cluster answers at %v",
			kvstore.ErrClusterConfig, ErrClusterIDMismatch, c.cfg.Name, id, pin, c.cfg.Client.Endpoints)
	}
	if m := cc.EffectiveMaxConnectedClusters(); m != c.cfg.MaxConnectedClusters {
		return 0, nil, fmt.Errorf("%w: peer %s has max connected clusters %d, this cluster %d: use the same value in every cluster of the mesh",
			kvstore.ErrClusterConfig, c.cfg.Name, m, c.cfg.MaxConnectedClusters)
	}
	if err := c.layout.ValidateClusterID(id); err != nil {
		return 0, nil, fmt.Errorf("%w: peer %s: %w", kvstore.ErrClusterConfig, c.cfg.Name, err)
	}
	hold, err := c.cfg.Registry.Claim(c.cfg.Name, id)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", kvstore.ErrClusterConfig, err)
	}
	return id, hold, nil
}

// adopt returns the validator for id and the key layout p; a changed ID or
// layout drains the peer first. The sink is called without holding mu.
func (c *Cluster) adopt(id identity.ClusterID, p schema.Paths) *validator {
	c.mu.Lock()
	if c.v != nil && c.id == id && c.v.paths == p {
		defer c.mu.Unlock()
		return c.v
	}
	changed, old := c.v != nil, c.id
	c.id = id
	c.v = newValidator(c.cfg.Name, id, c.layout, p, c.cfg.Sink, c.rej)
	c.v.trust, c.v.claims = c.cfg.Trust, c.cfg.Claims
	c.status.Synced = map[Kind]bool{}
	wasReady := c.status.Ready
	c.status.Ready = false
	v := c.v
	c.mu.Unlock()
	c.readyChanged(wasReady, false)
	if changed {
		c.log.Warn("peer's cluster ID or key layout changed: draining everything it announced", "old", old, "new", id, "cached", p.Cached() != "")
		c.cfg.Sink.Drain(c.cfg.Name)
	}
	c.cfg.Registry.Retain(c.cfg.Name, id) // free the old ID once nothing under it is left
	return v
}

func (c *Cluster) setSynced(k Kind) {
	c.mu.Lock()
	c.status.Synced[k] = true
	ready := true
	for _, kind := range Kinds {
		ready = ready && c.status.Synced[kind]
	}
	if ready && !c.status.Ready {
		c.log.Info("peer ready: every prefix synced")
	}
	was := c.status.Ready
	c.status.Ready = ready
	c.mu.Unlock()
	if o, ok := c.cfg.Sink.(Observer); ok {
		o.KindSynced(c.cfg.Name, k)
	}
	c.readyChanged(was, ready)
}

// readyChanged tells a sink that implements ReadyNotifier that the peer
// became ready or stopped being ready (called without holding mu).
func (c *Cluster) readyChanged(was, now bool) {
	if n, ok := c.cfg.Sink.(ReadyNotifier); ok && was != now {
		n.SetReady(c.cfg.Name, now)
	}
}

// watchConfig returns errConfigChanged when the peer's cluster config is
// deleted, or changed in a way that changes what is read (ID, max connected
// clusters, synced canaries, cached layout, whether services are
// exported), including before the watch started.
func (c *Cluster) watchConfig(ctx context.Context, cli *kvstore.Client, was schema.ClusterConfig) error {
	key := c.cfg.Paths.ClusterConfig(c.cfg.Name)
	same := func(value []byte) bool {
		now, err := c.cfg.Paths.DecodeClusterConfig(key, value)
		return err == nil && now.ID == was.ID && now.EffectiveMaxConnectedClusters() == was.EffectiveMaxConnectedClusters() &&
			now.Capabilities.SyncedCanaries == was.Capabilities.SyncedCanaries && now.Capabilities.Cached == was.Capabilities.Cached &&
			now.Capabilities.EndpointSlicesExportMode.ExportsServices() == was.Capabilities.EndpointSlicesExportMode.ExportsServices()
	}
	resp, err := cli.Etcd().Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 || !same(resp.Kvs[0].Value) {
		return errConfigChanged
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range cli.Etcd().Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", key, err)
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete || !same(ev.Kv.Value) {
				return errConfigChanged
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("watch %s: channel closed", key)
}

// handler adapts validator methods to a kvstore.WatchHandler.
type handler struct {
	up     func(string, []byte)
	del    func(string)
	synced func()
	flush  func()
}

func (h handler) OnUpsert(k string, v []byte) { h.up(k, v) }
func (h handler) OnDelete(k string)           { h.del(k) }
func (h handler) OnSynced()                   { h.synced() }
func (h handler) OnBatchDone() {
	if h.flush != nil {
		h.flush()
	}
}
