// Package peers turns the mesh configuration directory (one etcd client
// config file per peer cluster, file name = cluster name, as mounted from a
// Secret) into running peer connections: a file added connects, a file
// removed disconnects and drains that cluster, a file changed (or a
// certificate it names) reconnects without draining.
//
// Rules: the directory is polled, not watched with inotify, because Secret
// volumes swap their content through symlinks; files whose names contain a
// "." are ignored: the volume's ..data machinery, and the certificates the
// configs name, kept next to them as Cilium's clustermesh Secret does
// (<peer>.etcd-client-ca.crt, <peer>.etcd-client.crt,
// <peer>.etcd-client.key); a file that does not parse is reported in the
// peer's status and connects nothing.
//
// With a cache config (Config.CacheConfigFile), every peer is read from
// the local clustermesh-apiserver's cache of remote state instead of its own
// etcd: its file then only names it and records its trust anchors.
//
// What connect recorded in each file (the peer's cluster-id and pod-cidrs)
// becomes that peer's remote.Trust; Trusts publishes every configured
// peer's, for the checks of one peer against the others (remote.Claims).
package peers

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Config of the peer manager.
type Config struct {
	// Dir is the mesh configuration directory.
	Dir string
	// PollInterval of the directory (default 1s).
	PollInterval         time.Duration
	LocalName            string
	LocalID              identity.ClusterID
	MaxConnectedClusters uint32
	Paths                schema.Paths
	Sink                 remote.Sink
	Backoff              backoff.Backoff
	Log                  *slog.Logger
	Rejected             *prometheus.CounterVec
	// CacheTTL revokes a peer's state when its heartbeat stops (see
	// remote.Config.CacheTTL); zero keeps it.
	CacheTTL time.Duration
	// ProbeInterval of every peer's liveness probe (see
	// remote.Config.ProbeInterval; 0: the default).
	ProbeInterval time.Duration
	// Claims is what the rest of the mesh holds, handed to every peer
	// (optional; see remote.Config.Claims).
	Claims remote.Claims
	// CacheConfigFile, when set, is the etcd client config of the local
	// clustermesh-apiserver's cache of remote state: every peer is then
	// read there (remote.Config.ThroughCache), with what its own file
	// records (name, cluster-id, pod-cidrs), instead of at its own etcd.
	CacheConfigFile string
}

// Manager runs one remote.Cluster per config file.
type Manager struct {
	cfg      Config
	log      *slog.Logger
	registry *remote.Registry

	mu    sync.Mutex // guards peers, bad
	peers map[string]*peer
	bad   map[string]string // file name → why it connects nothing

	// lastScanErr is the last error reading the directory, logged once
	// (only sync, from Run's goroutine, uses it).
	lastScanErr string

	// scanned is closed after the directory was first read.
	scanned     chan struct{}
	scannedOnce sync.Once

	// trusts is every configured peer's Trust, replaced whole (never
	// modified) by sync. It is not guarded by mu: peers read it from
	// their own goroutines (through Claims) while sync, holding mu, waits
	// for a stopping peer.
	trusts atomic.Pointer[map[string]remote.Trust]
}

type peer struct {
	cluster *remote.Cluster
	hash    [32]byte
	cancel  context.CancelFunc
	done    chan struct{}
}

// New returns a manager; nothing happens before Run.
func New(cfg Config) *Manager {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, log: log, registry: remote.NewRegistry(cfg.LocalName, cfg.LocalID),
		peers: map[string]*peer{}, bad: map[string]string{}, scanned: make(chan struct{})}
	m.trusts.Store(&map[string]remote.Trust{})
	return m
}

// Trusts returns what connect recorded of every configured peer (the files
// that parse), by peer name, as of the last poll of the directory. The map
// is shared and never changes: callers must not modify it. Safe for
// concurrent use, and it never blocks.
func (m *Manager) Trusts() map[string]remote.Trust { return *m.trusts.Load() }

// Scanned is closed once the directory was read (and every peer it names
// started) for the first time: from then on Trusts names every configured
// peer.
func (m *Manager) Scanned() <-chan struct{} { return m.scanned }

// Run polls the directory until ctx ends, then stops every peer (keeping
// their state: the agent is stopping, not the mesh).
func (m *Manager) Run(ctx context.Context) error {
	defer m.stopAll()
	for {
		m.sync(ctx)
		t := time.NewTimer(m.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Status returns every peer's status, sorted by name; files that do not
// parse appear with their error.
func (m *Manager) Status() []remote.Status {
	m.mu.Lock()
	out := make([]remote.Status, 0, len(m.peers)+len(m.bad))
	for _, p := range m.peers {
		out = append(out, p.cluster.Status())
	}
	for name, why := range m.bad {
		out = append(out, remote.Status{Name: name, LastFailure: why})
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// sync reconciles the running peers with the directory's files.
func (m *Manager) sync(ctx context.Context) {
	files, err := m.scan()
	if err != nil {
		// Once per distinct error, not once per poll.
		if msg := err.Error(); msg != m.lastScanErr {
			m.lastScanErr = msg
			m.log.Warn("read mesh config directory", "dir", m.cfg.Dir, "error", err)
		}
		return // keep what runs: a transient error must not drain the mesh
	}
	m.lastScanErr = ""
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, p := range m.peers {
		if f, ok := files[name]; !ok || f.err != "" {
			m.log.Info("peer removed from the mesh configuration: disconnecting and draining", "peer", name)
			m.stop(p)
			delete(m.peers, name)
			m.registry.Release(name)
			m.cfg.Sink.Drain(name)
		}
	}
	// Publish every peer's trust before any new peer starts, so that its
	// first nodes are checked against the others' recorded CIDRs.
	trusts := map[string]remote.Trust{}
	for name, f := range files {
		if f.err == "" {
			trusts[name] = f.trust
		}
	}
	m.trusts.Store(&trusts)
	defer m.scannedOnce.Do(func() { close(m.scanned) })
	m.bad = map[string]string{}
	for name, f := range files {
		if f.err != "" {
			m.bad[name] = f.err
			continue
		}
		if p, ok := m.peers[name]; ok {
			if p.hash == f.hash {
				continue
			}
			m.log.Info("peer configuration changed: reconnecting", "peer", name)
			m.stop(p)
			delete(m.peers, name)
			m.registry.Release(name)
		}
		c, err := remote.New(remote.Config{
			Name: name, Client: f.cfg, Paths: m.cfg.Paths, LocalName: m.cfg.LocalName, LocalID: m.cfg.LocalID,
			MaxConnectedClusters: m.cfg.MaxConnectedClusters, Registry: m.registry, Sink: m.cfg.Sink,
			Backoff: m.cfg.Backoff, Log: m.log, Rejected: m.cfg.Rejected, CacheTTL: m.cfg.CacheTTL, ProbeInterval: m.cfg.ProbeInterval,
			Trust: f.trust, Claims: m.cfg.Claims, ThroughCache: m.cfg.CacheConfigFile != "",
		})
		if err != nil {
			m.bad[name] = err.Error()
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		p := &peer{cluster: c, hash: f.hash, cancel: cancel, done: make(chan struct{})}
		go func() { // owned by m: stopped and waited for in stop
			defer close(p.done)
			_ = c.Run(pctx)
		}()
		m.peers[name] = p
		m.log.Info("peer added to the mesh", "peer", name)
	}
}

func (m *Manager) stop(p *peer) {
	p.cancel()
	<-p.done
}

func (m *Manager) stopAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, p := range m.peers {
		m.stop(p)
		delete(m.peers, name)
	}
}

type file struct {
	cfg   kvstore.ClientConfig
	trust remote.Trust
	hash  [32]byte
	err   string
}

// scan reads every peer file and hashes it with the certificate files it
// names, so that a rotated certificate reconnects too.
func (m *Manager) scan() (map[string]file, error) {
	entries, err := os.ReadDir(m.cfg.Dir)
	if err != nil {
		return nil, err
	}
	cache, cacheRaw, cacheErr := m.cacheConfig()
	out := map[string]file{}
	for _, e := range entries {
		name := e.Name()
		if strings.Contains(name, ".") {
			continue // the volume's ..data machinery, or a peer's certificate (<peer>.etcd-client.crt)
		}
		path := filepath.Join(m.cfg.Dir, name)
		if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
			continue // a directory, or a dangling link mid-swap
		}
		var f file
		if err := identity.ValidateClusterName(name); err != nil {
			f.err = "file " + path + ": the file name must be the peer's cluster name: " + err.Error()
			out[name] = f
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			f.err = err.Error()
			out[name] = f
			continue
		}
		cfg, err := kvstore.ParseClientConfig(raw)
		if err != nil {
			f.err = "file " + path + ": " + err.Error()
			out[name] = f
			continue
		}
		if cacheErr != "" {
			f.err = cacheErr
			out[name] = f
			continue
		}
		f.trust = trustOf(cfg)
		h := sha256.New()
		h.Write(raw)
		if m.cfg.CacheConfigFile != "" {
			// The peer is read through the local cache: only what its
			// file records of it is used, and the cache's config (and
			// its certificates) are what a change reconnects for.
			h.Write(cacheRaw)
			cfg = cache
		}
		for _, ref := range []string{cfg.TrustedCAFile, cfg.CertFile, cfg.KeyFile} {
			if ref == "" {
				continue
			}
			if b, err := os.ReadFile(ref); err == nil {
				h.Write(b)
			} else if !errors.Is(err, os.ErrNotExist) {
				m.log.Debug("read certificate file named by peer config", "file", ref, "error", err)
			}
		}
		copy(f.hash[:], h.Sum(nil))
		f.cfg = cfg
		out[name] = f
	}
	return out, nil
}

// cacheConfig reads the cache's client config, if one is configured; a
// failure is every peer's error.
func (m *Manager) cacheConfig() (kvstore.ClientConfig, []byte, string) {
	if m.cfg.CacheConfigFile == "" {
		return kvstore.ClientConfig{}, nil, ""
	}
	raw, err := os.ReadFile(m.cfg.CacheConfigFile)
	if err != nil {
		return kvstore.ClientConfig{}, nil, "the local cache's etcd config (--clustermesh-cache-config): " + err.Error()
	}
	cfg, err := kvstore.ParseClientConfig(raw)
	if err != nil {
		return kvstore.ClientConfig{}, nil, "the local cache's etcd config " + m.cfg.CacheConfigFile + " (--clustermesh-cache-config): " + err.Error()
	}
	return cfg, raw, ""
}

// trustOf returns what connect recorded in a peer's (validated) config.
func trustOf(cfg kvstore.ClientConfig) remote.Trust {
	cidrs, _ := cfg.PodCIDRPrefixes() // validated by ParseClientConfig
	return remote.Trust{ClusterID: identity.ClusterID(cfg.ClusterID), PodCIDRs: cidrs}
}
