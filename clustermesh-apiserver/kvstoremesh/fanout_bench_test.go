package kvstoremesh_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// benchEnvInt reads a size of the benchmark from the environment.
func benchEnvInt(b *testing.B, name string, def int) int {
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

func shmDir() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm" // measure etcd's serving, not the disk
	}
	return ""
}

// fanout is one run of BenchmarkFanout: what the peer's etcd (and, with
// the cache, the local etcd) spent while agents watched a stream of
// updates, and how long each update took to reach every agent.
type fanout struct {
	peer, local     kvtest.Usage // consumed during the window
	peerRSS         uint64       // after the window
	localRSS        uint64
	cache           kvtest.Usage // the cache's process, during the window
	cacheRSS        uint64
	clientsCPU      time.Duration // this process (the agents)
	window          time.Duration
	p50, p99, worst time.Duration
	// firstP50, firstP99: to the first agent that received an update
	// (without the fan-out to the others).
	firstP50, firstP99 time.Duration
	// putP50, putP99: how long the writer's Puts on the peer's etcd took.
	putP50, putP99 time.Duration
	putRetries     int // Puts etcd failed (timed out), tried again
}

// fanoutKeys is the number of ip entries the updates cycle through.
const fanoutKeys = 1000

func fanoutEntry(i, seq int) string {
	return fmt.Sprintf(`{"IP":"10.2.%d.%d","Mask":null,"HostIP":"192.168.2.10","ID":131073,"Key":0,"Metadata":"","K8sNamespace":"default","K8sPodName":"u%d"}`,
		i/250, i%250+1, seq)
}

// populateFanoutPeer writes the peer's cluster config, node, identity and
// ip entries, and its synced markers, with a raw client.
func populateFanoutPeer(b *testing.B, cli *clientv3.Client, p schema.Paths) {
	b.Helper()
	ops := []clientv3.Op{
		clientv3.OpPut(p.ClusterConfig("cluster2"), `{"id":2,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}`),
		clientv3.OpPut(p.Node("cluster2", "n1"), node2),
		clientv3.OpPut(p.Identity(131073), labels),
	}
	for i := range fanoutKeys {
		ops = append(ops, clientv3.OpPut(p.IPDefaultPrefix()+fmt.Sprintf("10.2.%d.%d", i/250, i%250+1), fanoutEntry(i, -1)))
	}
	for _, prefix := range []string{p.NodesPrefix(), p.IdentitiesPrefix(), p.IPPrefix(), p.ServicesPrefix()} {
		ops = append(ops, clientv3.OpPut(p.Synced("cluster2", prefix), "2026-12-04T00:00:00Z"))
	}
	for len(ops) > 0 {
		n := min(len(ops), 128)
		if _, err := cli.Txn(b.Context()).Then(ops[:n]...).Commit(); err != nil {
			b.Fatal(err)
		}
		ops = ops[n:]
	}
}

// seen records, per update, how many agents saw it and when the last one
// did (nanoseconds since start).
type seen struct {
	start time.Time
	count []atomic.Int32
	first []atomic.Int64 // 0: none yet
	last  []atomic.Int64
}

// agentHandler is one agent's watch handler: it notes each update's
// sequence number (the pod name "u<seq>").
type agentHandler struct {
	s      *seen
	synced chan struct{}
}

var podMarker = []byte(`"K8sPodName":"u`)

// parseSeq reads an update's sequence number from its value.
func parseSeq(v []byte) (int, bool) {
	i := bytes.Index(v, podMarker)
	if i < 0 {
		return 0, false
	}
	rest := v[i+len(podMarker):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return 0, false
	}
	seq, err := strconv.Atoi(string(rest[:end]))
	return seq, err == nil && seq >= 0
}

func (h *agentHandler) OnUpsert(_ string, v []byte) {
	seq, ok := parseSeq(v)
	if !ok || seq >= len(h.s.count) {
		return
	}
	now := int64(time.Since(h.s.start))
	h.s.count[seq].Add(1)
	h.s.first[seq].CompareAndSwap(0, now)
	for {
		old := h.s.last[seq].Load()
		if now <= old || h.s.last[seq].CompareAndSwap(old, now) {
			break
		}
	}
}
func (h *agentHandler) OnDelete(string) {}
func (h *agentHandler) OnSynced()       { close(h.synced) }

// runAgents starts n agents, each with its own connection to cfg and a
// WatchStore (the agent's reader) of prefix, and waits until all listed it.
func runAgents(ctx context.Context, b *testing.B, cfg kvstore.ClientConfig, n int, prefix, syncedKey string, s *seen) *sync.WaitGroup {
	b.Helper()
	var wg sync.WaitGroup
	var synced []chan struct{}
	for range n {
		cli := kvtest.ConnectConfig(b, cfg)
		h := &agentHandler{s: s, synced: make(chan struct{})}
		ws, err := kvstore.NewWatchStore(cli, kvstore.WatchStoreConfig{Prefix: prefix, SyncedKey: syncedKey, Backoff: meshtest.Fast}, h)
		if err != nil {
			b.Fatal(err)
		}
		synced = append(synced, h.synced)
		wg.Go(func() { _ = ws.Run(ctx) })
	}
	deadline := time.After(5 * time.Minute)
	for i, ch := range synced {
		select {
		case <-ch:
		case <-deadline:
			b.Fatalf("%d of %d agents listed %s within 5m", i, n, prefix)
		}
	}
	return &wg
}

func cpuSelf() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func usage(b *testing.B, p interface{ Usage() (kvtest.Usage, error) }) kvtest.Usage {
	b.Helper()
	u, err := p.Usage()
	if err != nil {
		b.Fatal(err)
	}
	return u
}

// fanoutMode is where the agents read the peer.
type fanoutMode int

const (
	fanoutDirect fanoutMode = iota // the peer's etcd
	fanoutMirror                   // the local etcd, the hand-written mirror's copy (a baseline)
	fanoutCache                    // the local etcd, the cache's copy
)

// runFanout measures one mode: agents watch the peer's etcd directly, or
// the local etcd where the cache (or the hand-written mirror) copies the
// peer, in a process of its own.
func runFanout(b *testing.B, mode fanoutMode, agents, rate, seconds int) fanout {
	b.Helper()
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	peer := kvtest.StartProcess(b, kvtest.Options{Cluster: "cluster2", DataDir: shmDir()})
	writer := peer.Connect(b)
	paths := peer.Paths
	populateFanoutPeer(b, writer.Etcd(), paths)

	watchCfg, prefix, syncedKey := peer.ClientConfig(), paths.IPDefaultPrefix(), paths.Synced("cluster2", paths.IPPrefix())
	var local *kvtest.Process
	var cache *cacheProcess
	if mode != fanoutDirect {
		local = kvtest.StartProcess(b, kvtest.Options{Cluster: "cluster1", DataDir: shmDir()})
		if mode == fanoutCache {
			cache = startCacheProcess(b, local, writeMeshDir(b, peer))
		} else {
			cache = startMirrorProcess(b, local, peer)
		}
		cp := paths.Cache("cluster2")
		watchCfg, prefix, syncedKey = local.ClientConfig(), cp.IPDefaultPrefix(), cp.Synced("cluster2", cp.IPPrefix())
	}

	updates := rate * seconds
	s := &seen{count: make([]atomic.Int32, updates), first: make([]atomic.Int64, updates), last: make([]atomic.Int64, updates)}
	actx, acancel := context.WithCancel(ctx)
	wg := runAgents(actx, b, watchCfg, agents, prefix, syncedKey, s)
	defer func() {
		acancel()
		wg.Wait()
	}()

	w := startWriterProcess(b, peer, rate, updates)
	peer0, self0 := usage(b, peer), cpuSelf()
	var local0, cache0 kvtest.Usage
	if local != nil {
		local0, cache0 = usage(b, local), usage(b, cache)
	}
	// The writer (a process of its own) is open-loop: each update is put
	// at its due time in a goroutine of its own, however long the previous
	// Puts take, and its latency counts from that due time. A writer that
	// waited for each Put would slow down exactly when the etcd it writes
	// to is loaded (without the cache, the one serving the agents) and
	// hide that wait from the figures (coordinated omission).
	due := make([]time.Duration, updates)
	interval := time.Second / time.Duration(rate)
	for seq := range updates {
		due[seq] = time.Duration(seq) * interval
	}
	s.start = time.Now()
	putTook, retries := w.Go(b, s.start)
	deadline := time.Now().Add(2 * time.Minute)
	for seq := range updates {
		for int(s.count[seq].Load()) < agents {
			if time.Now().After(deadline) {
				b.Fatalf("update %d seen by %d of %d agents within 2m of the last write", seq, s.count[seq].Load(), agents)
			}
			time.Sleep(time.Millisecond)
		}
	}
	var r fanout
	r.window = time.Since(s.start)
	r.clientsCPU = cpuSelf() - self0
	peer1 := usage(b, peer)
	r.peer = kvtest.Usage{CPU: peer1.CPU - peer0.CPU}
	r.peerRSS = peer1.RSS
	if local != nil {
		local1 := usage(b, local)
		r.local = kvtest.Usage{CPU: local1.CPU - local0.CPU}
		r.localRSS = local1.RSS
		cache1 := usage(b, cache)
		r.cache = kvtest.Usage{CPU: cache1.CPU - cache0.CPU}
		r.cacheRSS = cache1.RSS
	}
	lat, first := make([]time.Duration, updates), make([]time.Duration, updates)
	for seq := range updates {
		lat[seq] = time.Duration(s.last[seq].Load()) - due[seq]
		first[seq] = time.Duration(s.first[seq].Load()) - due[seq]
	}
	slices.Sort(lat)
	slices.Sort(first)
	slices.Sort(putTook)
	r.putP50, r.putP99, r.putRetries = putTook[updates/2], putTook[(updates*99)/100], retries
	r.p50, r.p99, r.worst = lat[updates/2], lat[(updates*99)/100], lat[updates-1]
	r.firstP50, r.firstP99 = first[updates/2], first[(updates*99)/100]
	return r
}

// BenchmarkFanout measures one cluster's etcd serving agents that watch a
// stream of updates (1,000 agents, 100 updates/s for 10 s by default:
// CLUSTERMESH_BENCH_AGENTS, _RATE, _SECONDS), in three modes in the same
// run:
//
//   - without the cache: every agent watches the peer's etcd (one
//     connection and one watch per agent);
//   - with the cache: the peer's etcd serves one watcher (the local
//     clustermesh-apiserver's cache, kvstoremesh), which mirrors it into
//     the local etcd, where the agents watch;
//   - with the hand-written mirror instead of the cache (handMirror: watch
//     the peer, one Put per event in order, no validation, no leases): the
//     naive cache, whose one-at-a-time Puts fall behind once the local
//     etcd is loaded by the agents' watches (the cache writes with
//     parallel batched transactions).
//
// Each etcd runs in a child process (kvtest.StartProcess: the project's
// embedded etcd server), and so do the cache and the mirror
// (startCacheProcess, startMirrorProcess), as in a deployment, so that
// their CPU time and resident memory are read from /proc apart from the
// agents', which run in this process as real kvstore.WatchStores with
// their own client each (and so that the cache does not compete with the
// agents' callbacks inside one Go runtime). The fan-out latency of an
// update is from its due time (the writer puts at a steady rate,
// open-loop, so that a slow Put delays no later update) to the moment the
// last of the agents received it.
func BenchmarkFanout(b *testing.B) {
	agents := benchEnvInt(b, "CLUSTERMESH_BENCH_AGENTS", 1000)
	rate := benchEnvInt(b, "CLUSTERMESH_BENCH_RATE", 100)
	seconds := benchEnvInt(b, "CLUSTERMESH_BENCH_SECONDS", 10)
	var direct, mirror, cached fanout
	for b.Loop() {
		direct = runFanout(b, fanoutDirect, agents, rate, seconds)
		mirror = runFanout(b, fanoutMirror, agents, rate, seconds)
		cached = runFanout(b, fanoutCache, agents, rate, seconds)
	}
	cores := func(f fanout, u kvtest.Usage) float64 { return u.CPU.Seconds() / f.window.Seconds() }
	b.Logf("%d agents, %d updates/s for %d s", agents, rate, seconds)
	for _, m := range []struct {
		name string
		f    fanout
	}{{"without cache", direct}, {"hand mirror", mirror}, {"with cache", cached}} {
		b.Logf("%-13s peer etcd %.3f cores, RSS %.1f MiB; local etcd %.3f cores, RSS %.1f MiB; cache process %.3f cores, RSS %.1f MiB; agents process %.3f cores; fan-out p50 %v p99 %v max %v (first agent: p50 %v p99 %v); peer Put p50 %v p99 %v, %d retried",
			m.name, cores(m.f, m.f.peer), float64(m.f.peerRSS)/(1<<20), cores(m.f, m.f.local), float64(m.f.localRSS)/(1<<20),
			cores(m.f, m.f.cache), float64(m.f.cacheRSS)/(1<<20),
			m.f.clientsCPU.Seconds()/m.f.window.Seconds(), m.f.p50, m.f.p99, m.f.worst, m.f.firstP50, m.f.firstP99, m.f.putP50, m.f.putP99, m.f.putRetries)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(cores(direct, direct.peer), "peer-etcd-cores-direct")
	b.ReportMetric(cores(cached, cached.peer), "peer-etcd-cores-cached")
	b.ReportMetric(cores(cached, cached.local), "local-etcd-cores-cached")
	b.ReportMetric(cores(cached, cached.cache), "cache-cores")
	b.ReportMetric(cores(direct, direct.peer)/cores(cached, cached.peer), "peer-cpu-direct/cached")
	b.ReportMetric(float64(direct.peerRSS)/(1<<20), "peer-etcd-MiB-direct")
	b.ReportMetric(float64(cached.peerRSS)/(1<<20), "peer-etcd-MiB-cached")
	b.ReportMetric(float64(cached.localRSS)/(1<<20), "local-etcd-MiB-cached")
	b.ReportMetric(float64(direct.peerRSS)/float64(cached.peerRSS), "peer-mem-direct/cached")
	b.ReportMetric(ms(direct.p99), "p99-ms-direct")
	b.ReportMetric(ms(mirror.p99), "p99-ms-mirror")
	b.ReportMetric(ms(cached.p99), "p99-ms-cached")
	b.ReportMetric(float64(cached.p99)/float64(direct.p99), "p99-cached/direct")
	b.ReportMetric(float64(cached.p99)/float64(mirror.p99), "p99-cached/mirror")
	b.ReportMetric(ms(direct.firstP50), "first-p50-ms-direct")
	b.ReportMetric(ms(mirror.firstP50), "first-p50-ms-mirror")
	b.ReportMetric(ms(cached.firstP50), "first-p50-ms-cached")
	b.ReportMetric(float64(cached.firstP50)/float64(mirror.firstP50), "first-p50-cached/mirror")
}
