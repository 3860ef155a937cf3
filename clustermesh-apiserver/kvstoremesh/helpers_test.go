package kvstoremesh_test

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/clustermesh-apiserver/kvstoremesh"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

const (
	node2  = `{"Name":"n1","Cluster":"cluster2","IPAddresses":[{"Type":"InternalIP","IP":"192.168.2.10"}],"IPv4AllocCIDR":{"IP":"10.2.0.0","Mask":"//8AAA=="},"ClusterID":2}`
	labels = "k8s:app=rebel-base;k8s:io.cilium.k8s.policy.cluster=cluster2;k8s:io.kubernetes.pod.namespace=default;"
)

func ipEntry(ip string, id uint32) string {
	return `{"IP":"` + ip + `","Mask":null,"HostIP":"192.168.2.10","ID":` + strconv.FormatUint(uint64(id), 10) + `,"Key":0,"Metadata":""}`
}

func service(cluster string, id uint32) string {
	return `{"cluster":"` + cluster + `","namespace":"default","name":"rebel-base","frontends":{},` +
		`"backends":{"10.2.1.5":{"http":{"Protocol":"TCP","Port":80}}},"labels":{},"selector":{},"includeExternal":true,"shared":true,"clusterID":` +
		strconv.FormatUint(uint64(id), 10) + `}`
}

// ipOf returns the n-th pod address of the peer's node (10.2.0.0/16).
func ipOf(n int) string { return fmt.Sprintf("10.2.%d.%d", n/250, n%250+1) }

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, what, cond)
}

// local is the local cluster's etcd with the cache's mesh directory.
type local struct {
	env   *kvtest.Env
	admin *kvstore.Client
	dir   string
}

func startLocal(t *testing.T) *local {
	t.Helper()
	env := kvtest.Start(t, kvtest.Options{Cluster: "cluster1"})
	return &local{env: env, admin: env.Connect(t, kvstore.AdminUser), dir: t.TempDir()}
}

func (l *local) config() kvstoremesh.Config {
	return kvstoremesh.Config{Local: l.admin, Paths: l.env.Paths, LocalName: "cluster1", LocalID: 1,
		MaxConnectedClusters: 255, MeshConfigDir: l.dir, PollInterval: 50 * time.Millisecond, Backoff: meshtest.Fast}
}

// peerBehindProxy starts cluster2 with a node and the ip entries
// 10.2.1.5 and 10.2.1.6, synced, and writes its mesh file into the local
// cluster's directory with the endpoint of a proxy to its etcd, which the
// test cuts or holds.
func (l *local) peerBehindProxy(t *testing.T) (*meshtest.Peer, *kvtest.Proxy) {
	t.Helper()
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.5", ipEntry("10.2.1.5", 131073))
	p.Put(t, paths.IPDefaultPrefix()+"10.2.1.6", ipEntry("10.2.1.6", 131073))
	p.Synced()
	u, err := url.Parse(p.Env.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := kvtest.StartProxy(t, u.Host)
	cfg := p.Env.ClientConfig(t, kvstore.RemoteUser)
	cfg.Endpoints = []string{"https://" + proxy.Addr}
	writeYAML(t, filepath.Join(l.dir, "cluster2"), cfg)
	return p, proxy
}

// runCache runs a cache until the returned stop (or the test's end).
func runCache(t *testing.T, cfg kvstoremesh.Config) (*kvstoremesh.Cache, func()) {
	t.Helper()
	c, err := kvstoremesh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return c, stop
}

// cacheSynced reports whether the cache holds peer ready with every
// marker written.
func cacheSynced(c *kvstoremesh.Cache, peer string) bool {
	for _, st := range c.Status() {
		if st.Name != peer {
			continue
		}
		ok := st.Ready && st.Published
		for _, k := range remote.Kinds {
			ok = ok && st.Cache[k].Synced
		}
		return ok
	}
	return false
}

// keys lists the keys under prefix in the local etcd, sorted.
func (l *local) keys(t *testing.T, prefix string) []string {
	t.Helper()
	resp, err := l.admin.Etcd().Get(t.Context(), prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	slices.Sort(out)
	return out
}

// agent reads peer from the local etcd's cache as a local agent does: the
// local user, the local etcd's endpoints, the peer's name.
func (l *local) agent(t *testing.T, peer string, sink remote.Sink) *remote.Cluster {
	t.Helper()
	c, err := remote.New(remote.Config{
		Name: peer, Client: l.env.ClientConfig(t, kvstore.LocalUser), Paths: l.env.Paths,
		LocalName: "cluster1", LocalID: 1, MaxConnectedClusters: 255, Registry: remote.NewRegistry("cluster1", 1),
		Sink: sink, Backoff: meshtest.Fast,
	})
	if err != nil {
		t.Fatal(err)
	}
	meshtest.Go(t, c.Run)
	return c
}

// recSink is an agent's state: what it holds, and every delete it saw.
type recSink struct {
	mu      sync.Mutex
	state   map[string]string
	deletes []string
	drains  int
}

func newRecSink() *recSink { return &recSink{state: map[string]string{}} }

func (s *recSink) set(k, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state[k] = v
}

func (s *recSink) del(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.state, k)
	s.deletes = append(s.deletes, k)
}

func (s *recSink) UpsertNode(_ string, n schema.Node) {
	s.set("node "+n.Name, fmt.Sprint(n.PodCIDRs()))
}
func (s *recSink) DeleteNode(_, name string) { s.del("node " + name) }
func (s *recSink) UpsertIdentity(_ string, id identity.NumericIdentity, l identity.Labels) {
	s.set(fmt.Sprintf("identity %d", id), l.SortedKVStoreString())
}
func (s *recSink) DeleteIdentity(_ string, id identity.NumericIdentity) {
	s.del(fmt.Sprintf("identity %d", id))
}
func (s *recSink) UpsertIP(_ string, p netip.Prefix, e schema.IPEntry) {
	s.set("ip "+p.Addr().String(), fmt.Sprint(e.ID))
}
func (s *recSink) DeleteIP(_ string, p netip.Prefix) { s.del("ip " + p.Addr().String()) }
func (s *recSink) UpsertService(_ string, cs schema.ClusterService) {
	s.set("service "+cs.Namespace+"/"+cs.Name, fmt.Sprint(len(cs.Backends)))
}
func (s *recSink) DeleteService(_, ns, name string) { s.del("service " + ns + "/" + name) }
func (s *recSink) Drain(string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drains++
	for k := range s.state {
		s.deletes = append(s.deletes, k)
	}
	s.state = map[string]string{}
}

func (s *recSink) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.state))
	for k := range s.state {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (s *recSink) seenDeletes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deletes)
}
