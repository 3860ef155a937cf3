package remote_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/agent/claims"
	"github.com/clustermesh/clustermesh/agent/peers"
	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// The mesh benchmarks put many peers into one etcd, as the local
// clustermesh-apiserver's cache of remote state holds them (the agents'
// default: every peer read through the local cache, schema.Paths.Cache),
// one cluster config with the "cached" capability each, and connect one
// agent to them as cmd/clustermesh-agent wires it: a peers.Manager over
// a mesh configuration directory (one file per peer), the local cache's
// config, the agent's state through its buffered sink, and the claims
// that check each peer against the others.

// meshPeer is the size of one simulated peer.
type meshPeer struct {
	nodes, identities, endpoints, services int
}

func (m meshPeer) keys() int { return m.nodes + m.identities + m.endpoints + m.services }

// meshEnvInt reads a size from the environment.
func meshEnvInt(b *testing.B, name string, def int) int {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

func peerName(c int) string { return fmt.Sprintf("peer%03d", c) }

// nodeCIDR is node n's pod CIDR in peer c (cluster ID c): a /24, the
// peer's nodes side by side inside 10.0.0.0/8 (at most 32 nodes a peer,
// IDs up to 511: 10.<c/8>.<(c%8)*32+n>.0/24).
func nodeCIDR(c, n int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(c / 8), byte((c%8)*32 + n), 0}), 24)
}

// nodeIP is node n's address in peer c (172.16.0.0/12).
func nodeIP(c, n int) string { return fmt.Sprintf("172.%d.%d.%d", 16+c/256, c%256, n+1) }

// populateMesh writes peers first..last (their cluster IDs) of size m into
// etcd in the cache layout, with raw transactions of 128 puts.
func populateMesh(b *testing.B, cli *clientv3.Client, paths schema.Paths, first, last int, m meshPeer, layout identity.Layout) {
	b.Helper()
	if m.nodes > 32 || m.endpoints > m.nodes*254 {
		b.Fatalf("%d nodes, %d endpoints a peer: at most 32 nodes of 254 endpoints each", m.nodes, m.endpoints)
	}
	var ops []clientv3.Op
	flush := func(force bool) {
		if len(ops) >= 128 || force && len(ops) > 0 {
			if _, err := cli.Txn(b.Context()).Then(ops...).Commit(); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	put := func(k, v string) { ops = append(ops, clientv3.OpPut(k, v)); flush(false) }
	maxCC := uint32(identity.MaxConnectedClusters255)
	if layout.ClusterIDBits() == 9 {
		maxCC = identity.MaxConnectedClusters511
	}
	for c := first; c <= last; c++ {
		name := peerName(c)
		cp := paths.Cache(name)
		base := uint32(c) << layout.LocalBits()
		put(paths.ClusterConfig(name), fmt.Sprintf(`{"id":%d,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":%d,"cached":true}}`, c, maxCC))
		for n := range m.nodes {
			cidr := nodeCIDR(c, n)
			mask := "////AA==" // /24
			put(cp.Node(name, fmt.Sprintf("node%02d", n)), fmt.Sprintf(
				`{"Name":"node%02d","Cluster":"%s","IPAddresses":[{"Type":"InternalIP","IP":"%s"}],"IPv4AllocCIDR":{"IP":"%s","Mask":"%s"},"ClusterID":%d}`,
				n, name, nodeIP(c, n), cidr.Addr(), mask, c))
		}
		for i := range m.identities {
			put(cp.Identity(base+1+uint32(i)), fmt.Sprintf("k8s:app=app%d;k8s:io.cilium.k8s.policy.cluster=%s;k8s:io.kubernetes.pod.namespace=ns%d;", i, name, i%50))
		}
		for i := range m.endpoints {
			n := i % m.nodes
			a := nodeCIDR(c, n).Addr().As4()
			a[3] = byte(i/m.nodes + 1)
			ip := netip.AddrFrom4(a).String()
			put(cp.IPDefaultPrefix()+ip, fmt.Sprintf(`{"IP":"%s","Mask":null,"HostIP":"%s","ID":%d,"Key":0,"Metadata":"","K8sNamespace":"ns%d","K8sPodName":"pod-%d"}`,
				ip, nodeIP(c, n), base+1+uint32(i%m.identities), i%50, i))
		}
		for i := range m.services {
			backend := nodeCIDR(c, i%m.nodes).Addr().As4()
			backend[3] = byte(i/m.nodes%254 + 1)
			put(cp.Service(name, fmt.Sprintf("ns%d", i%50), fmt.Sprintf("svc%d", i)), fmt.Sprintf(
				`{"cluster":"%s","namespace":"ns%d","name":"svc%d","frontends":{"10.96.%d.%d":{"http":{"Protocol":"TCP","Port":80}}},"backends":{"%s":{"http":{"Protocol":"TCP","Port":8080}}},"labels":{},"selector":{},"includeExternal":true,"shared":true,"clusterID":%d}`,
				name, i%50, i, i/250, i%250+1, netip.AddrFrom4(backend), c))
		}
		for _, prefix := range []string{cp.NodesPrefix(), cp.IdentitiesPrefix(), cp.IPPrefix(), cp.ServicesPrefix()} {
			put(cp.Synced(name, prefix), "2026-12-04T00:00:00Z")
		}
	}
	flush(true)
}

// meshAgent is one agent connected to the peers of its mesh directory
// through the local cache.
type meshAgent struct {
	st     *state.State
	mgr    *peers.Manager
	ready  *readyCounter
	cancel context.CancelFunc
	done   chan struct{}
}

// agentSink is what the agent's state gives its peers
// (state.BufferedRemoteSink).
type agentSink interface {
	remote.Sink
	remote.Flusher
	remote.ReadyNotifier
}

// readyCounter is the agent's state sink, counting the peers that are
// ready as each peer tells it (remote.ReadyNotifier), so that waiting
// for them costs nothing per peer (polling every peer's status would
// cost the agent O(peers) per poll).
type readyCounter struct {
	agentSink
	mu    sync.Mutex // guards ready
	ready map[string]bool
	want  int
	all   chan struct{} // closed once want peers are ready
}

func (r *readyCounter) SetReady(cluster string, ready bool) {
	r.agentSink.SetReady(cluster, ready)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ready {
		r.ready[cluster] = true
	} else {
		delete(r.ready, cluster)
	}
	if len(r.ready) == r.want {
		select {
		case <-r.all:
		default:
			close(r.all)
		}
	}
}

// writeMeshDir writes one file per peer first..last (the etcd's address,
// the peer's recorded cluster ID), and the cache's config; it returns the
// directory and the cache config's path.
func writeMeshDir(b *testing.B, etcd *kvtest.Process, first, last int) (dir, cacheFile string) {
	b.Helper()
	dir = b.TempDir()
	cfg := etcd.ClientConfig()
	cfg.RateLimitQPS = 0 // the agent's default
	write := func(path string, cfg kvstore.ClientConfig) {
		y, err := yaml.Marshal(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(path, y, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	for c := first; c <= last; c++ {
		pc := cfg
		pc.ClusterID = uint32(c)
		write(filepath.Join(dir, peerName(c)), pc)
	}
	cacheFile = filepath.Join(b.TempDir(), "cache.yaml")
	write(cacheFile, cfg)
	return dir, cacheFile
}

// startMeshAgent starts an agent's state and peer manager, which should
// connect n peers.
func startMeshAgent(b *testing.B, dir, cacheFile string, paths schema.Paths, maxCC uint32, n int) *meshAgent {
	b.Helper()
	st, err := state.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	ready := &readyCounter{ready: map[string]bool{}, want: n, all: make(chan struct{})}
	ready.agentSink = st.BufferedRemoteSink()
	cl := claims.New("cluster1", st)
	mgr := peers.New(peers.Config{Dir: dir, LocalName: "cluster1", LocalID: 1, MaxConnectedClusters: maxCC, Paths: paths,
		Sink: ready, Claims: cl, CacheConfigFile: cacheFile, Backoff: fast})
	cl.SetTrusts(mgr.Trusts)
	ctx, cancel := context.WithCancel(b.Context())
	a := &meshAgent{st: st, mgr: mgr, ready: ready, cancel: cancel, done: make(chan struct{})}
	go func() { _ = mgr.Run(ctx); close(a.done) }()
	return a
}

// waitReady waits until the n peers are ready.
func (a *meshAgent) waitReady(b *testing.B, timeout time.Duration) {
	b.Helper()
	select {
	case <-a.ready.all:
	case <-time.After(timeout):
		ready := 0
		var last remote.Status
		for _, st := range a.mgr.Status() {
			if st.Ready {
				ready++
			} else {
				last = st
			}
		}
		b.Fatalf("%d of %d peers ready within %v; one not ready: %+v", ready, a.ready.want, timeout, last)
	}
}

func (a *meshAgent) stop() {
	a.cancel()
	<-a.done
}

// cpuSelf is this process's CPU time (user and system).
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func meshDataDir() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return ""
}
