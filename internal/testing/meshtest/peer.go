// Package meshtest simulates peer clusters for tests: a real embedded etcd
// per peer, written through kvstore SyncStores as its clustermesh-apiserver
// would, and the mesh configuration directory an agent reads.
package meshtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Fast is a backoff for tests.
var Fast = backoff.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}

// Peer is a simulated peer cluster.
type Peer struct {
	Env  *kvtest.Env
	Name string
	ID   uint32
	// Paths is the layout the peer writes: Env.Paths, or its cache layout
	// for a peer started with PeerOptions.Cached.
	Paths  schema.Paths
	cached bool
	stores map[string]*kvstore.SyncStore
}

// PeerOptions configure StartPeerWith.
type PeerOptions struct {
	// Cached writes the state in the cache layout (schema.Paths.Cache) and
	// announces the "cached" capability, as a KVStoreMesh-style cache does.
	Cached bool
}

// StartPeer starts the etcd of peer name with cluster ID id and its four
// writers (nodes, identities, ip entries, services). Nothing is synced
// before Synced.
func StartPeer(t testing.TB, name string, id uint32) *Peer {
	t.Helper()
	return StartPeerWith(t, name, id, PeerOptions{})
}

// StartPeerWith is StartPeer with options.
func StartPeerWith(t testing.TB, name string, id uint32, opts PeerOptions) *Peer {
	t.Helper()
	env := kvtest.Start(t, kvtest.Options{Cluster: name})
	admin := env.Connect(t, kvstore.AdminUser)
	p := &Peer{Env: env, Name: name, ID: id, Paths: env.Paths, cached: opts.Cached, stores: map[string]*kvstore.SyncStore{}}
	if opts.Cached {
		p.Paths = env.Paths.Cache(name)
	}
	paths := p.Paths
	for prefix, synced := range map[string]string{
		paths.NodesPrefix() + "/":    paths.NodesPrefix(),
		paths.IdentityIDPrefix():     paths.IdentitiesPrefix(),
		paths.IPDefaultPrefix():      paths.IPPrefix(),
		paths.ServicesPrefix() + "/": paths.ServicesPrefix(),
	} {
		s, err := kvstore.NewSyncStore(admin, kvstore.SyncStoreConfig{Prefix: prefix, SyncedKey: paths.Synced(name, synced), Backoff: Fast})
		if err != nil {
			t.Fatal(err)
		}
		p.stores[prefix] = s
		Go(t, s.Run)
	}
	p.SetClusterConfig(t, id)
	return p
}

// SetClusterConfig writes the peer's cluster config with ID id.
func (p *Peer) SetClusterConfig(t testing.TB, id uint32) {
	t.Helper()
	p.SetConfig(t, schema.ClusterConfig{ID: id, Capabilities: schema.ClusterConfigCapabilities{
		SyncedCanaries: true, MaxConnectedClusters: 255, Cached: p.cached}})
}

// SetConfig writes the peer's cluster config.
func (p *Peer) SetConfig(t testing.TB, cc schema.ClusterConfig) {
	t.Helper()
	b, _ := cc.Marshal()
	admin := p.Env.Connect(t, kvstore.AdminUser)
	if _, err := admin.Etcd().Put(t.Context(), p.Env.Paths.ClusterConfig(p.Name), string(b)); err != nil {
		t.Fatal(err)
	}
}

func (p *Peer) store(t testing.TB, key string) *kvstore.SyncStore {
	t.Helper()
	for prefix, s := range p.stores {
		if strings.HasPrefix(key, prefix) {
			return s
		}
	}
	t.Fatalf("no writer of the peer exports %s", key)
	return nil
}

// Put writes key through the peer's writer.
func (p *Peer) Put(t testing.TB, key, value string) {
	t.Helper()
	if err := p.store(t, key).Upsert(key, []byte(value)); err != nil {
		t.Fatal(err)
	}
}

// Delete deletes key through the peer's writer.
func (p *Peer) Delete(t testing.TB, key string) {
	t.Helper()
	p.store(t, key).Delete(key)
}

// Synced ends the peer's initial export: each writer writes its synced
// marker once what it was given is in etcd.
func (p *Peer) Synced() {
	for _, s := range p.stores {
		s.Synced()
	}
}

// WriteMeshFile writes the peer's client config (the read-only remote
// user) into the mesh configuration directory dir, as `clustermesh
// connect` does.
func (p *Peer) WriteMeshFile(t testing.TB, dir string) {
	t.Helper()
	b, err := yaml.Marshal(p.Env.ClientConfig(t, kvstore.RemoteUser))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, p.Name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Go runs f until the test ends, then cancels it and waits for it.
func Go(t testing.TB, f func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = f(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}
