package remote_test

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

// meshSize is what BenchmarkManyPeers measured at one number of peers.
type meshSize struct {
	peers                   int
	ready                   time.Duration
	heapPerPeer             float64 // bytes
	stackPerPeer            float64 // bytes of goroutine stacks (not in the heap)
	cpuPerPeer, etcdPerPeer time.Duration
	idlePerPeer             time.Duration // CPU per second per peer
}

// BenchmarkManyPeers connects one agent to 10, 100 and 510 peers (the
// largest mesh of the 511-cluster layout: 9 cluster-ID bits, IDs 1..511,
// this cluster being 1), each a small cluster (4 nodes, 20 identities,
// 100 endpoints, 10 services), all read through the local cache (one etcd,
// in a child process, holding every peer under the cache layout, one
// cluster config each; each peer is its own connection, as in the
// agent). At each size it prints the time until every peer is ready, and
// per connected peer: the agent's heap, the agent's CPU to connect and
// ingest, the etcd's CPU to serve that, and the agent's idle CPU
// afterwards; then the ratio of the largest size's per-peer cost to the
// smallest's (linear cost: ratio ≈ 1).
//
// Sizes: CLUSTERMESH_BENCH_PEER_COUNTS (default "10,100,510"),
// CLUSTERMESH_BENCH_PEER_ENDPOINTS (100), CLUSTERMESH_BENCH_IDLE_SECONDS (5);
// CLUSTERMESH_HEAP_PROFILE writes a heap profile at the largest size.
func BenchmarkManyPeers(b *testing.B) {
	counts := []int{10, 100, 510}
	if s := os.Getenv("CLUSTERMESH_BENCH_PEER_COUNTS"); s != "" {
		counts = nil
		for f := range strings.SplitSeq(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 || n > 510 {
				b.Fatalf("CLUSTERMESH_BENCH_PEER_COUNTS=%q: want numbers of peers 1..510 separated by commas", s)
			}
			counts = append(counts, n)
		}
	}
	m := meshPeer{nodes: 4, identities: 20, endpoints: meshEnvInt(b, "CLUSTERMESH_BENCH_PEER_ENDPOINTS", 100), services: 10}
	idle := time.Duration(meshEnvInt(b, "CLUSTERMESH_BENCH_IDLE_SECONDS", 5)) * time.Second
	layout, err := identity.NewLayout(identity.MaxConnectedClusters511)
	if err != nil {
		b.Fatal(err)
	}
	most := 0
	for _, n := range counts {
		most = max(most, n)
	}
	etcd := kvtest.StartProcess(b, kvtest.Options{DataDir: meshDataDir()})
	cli := etcd.Connect(b)
	populateMesh(b, cli.Etcd(), etcd.Paths, 2, most+1, m, layout)

	var results []meshSize
	for b.Loop() {
		results = results[:0]
		for _, n := range counts {
			dir, cacheFile := writeMeshDir(b, etcd, 2, n+1)
			h0, s0, cpu0 := heap(), stackInuse(), cpuSelf()
			e0, err := etcd.Usage()
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			a := startMeshAgent(b, dir, cacheFile, etcd.Paths, identity.MaxConnectedClusters511, n)
			a.waitReady(b, 10*time.Minute)
			r := meshSize{peers: n, ready: time.Since(start)}
			cpu := cpuSelf() - cpu0
			e1, err := etcd.Usage()
			if err != nil {
				b.Fatal(err)
			}
			if got := a.st.Snapshot().Count("ipcache"); got != n*m.endpoints {
				b.Fatalf("%d peers: %d ip entries in the agent's state, want %d", n, got, n*m.endpoints)
			}
			r.heapPerPeer = float64(heap()-h0) / float64(n)
			r.stackPerPeer = float64(stackInuse()-s0) / float64(n)
			if path := os.Getenv("CLUSTERMESH_HEAP_PROFILE"); path != "" && n == most {
				writeHeapProfile(b, path) // while every peer is connected
			}
			r.cpuPerPeer = cpu / time.Duration(n)
			r.etcdPerPeer = (e1.CPU - e0.CPU) / time.Duration(n)
			// A measurement window, not a wait for a result: what the
			// connected peers cost while nothing changes (keepalives, the
			// config watches).
			c0 := cpuSelf()
			time.Sleep(idle)
			r.idlePerPeer = time.Duration(float64(cpuSelf()-c0) / idle.Seconds() / float64(n))
			a.stop()
			runtime.KeepAlive(a)
			results = append(results, r)
		}
	}
	for _, r := range results {
		b.Logf("%3d peers: ready in %v (%v a peer); a peer: agent heap %.1f KiB and goroutine stacks %.1f KiB, agent CPU to connect and ingest %v, etcd CPU %v, agent idle CPU %v/s",
			r.peers, r.ready.Round(time.Millisecond), (r.ready / time.Duration(r.peers)).Round(time.Microsecond),
			r.heapPerPeer/1024, r.stackPerPeer/1024, r.cpuPerPeer.Round(time.Microsecond), r.etcdPerPeer.Round(time.Microsecond), r.idlePerPeer.Round(time.Microsecond))
		p := strconv.Itoa(r.peers)
		b.ReportMetric(r.ready.Seconds(), "ready-s@"+p)
		b.ReportMetric(r.heapPerPeer/1024, "heap-KiB/peer@"+p)
		b.ReportMetric(r.stackPerPeer/1024, "stack-KiB/peer@"+p)
		b.ReportMetric(float64(r.cpuPerPeer.Microseconds())/1000, "connect-cpu-ms/peer@"+p)
		b.ReportMetric(float64(r.idlePerPeer.Microseconds())/1000, "idle-cpu-ms/s/peer@"+p)
	}
	lo, hi := results[0], results[len(results)-1]
	ratio := func(a, b float64) float64 { return a / b }
	b.Logf("per-peer cost at %d peers / at %d peers: heap %.2f, connect CPU %.2f, etcd CPU %.2f, time to ready a peer %.2f, idle CPU %.2f",
		hi.peers, lo.peers, ratio(hi.heapPerPeer, lo.heapPerPeer), ratio(float64(hi.cpuPerPeer), float64(lo.cpuPerPeer)),
		ratio(float64(hi.etcdPerPeer), float64(lo.etcdPerPeer)),
		ratio(hi.ready.Seconds()/float64(hi.peers), lo.ready.Seconds()/float64(lo.peers)),
		ratio(float64(hi.idlePerPeer), float64(lo.idlePerPeer)))
	b.ReportMetric(ratio(hi.heapPerPeer, lo.heapPerPeer), "heap/peer-ratio")
	b.ReportMetric(ratio(float64(hi.cpuPerPeer), float64(lo.cpuPerPeer)), "connect-cpu/peer-ratio")
	b.ReportMetric(ratio(hi.ready.Seconds()/float64(hi.peers), lo.ready.Seconds()/float64(lo.peers)), "ready/peer-ratio")
}

// stackInuse returns the bytes of goroutine stacks in use.
func stackInuse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.StackInuse
}

// BenchmarkIngestMesh is the initial sync of a large mesh into one agent:
// 100 peers of 5,000 endpoints, 500 identities, 200 services and 25 nodes
// each (CLUSTERMESH_BENCH_PEERS, _ENDPOINTS, _IDENTITIES, _SERVICES), read
// through the local cache (one etcd in a child process, the cache
// layout), until every peer is ready; next to a raw paged range read of the
// same keys (pages of 5,000 keys, the WatchStore's page size, one prefix
// after the other) from the same etcd in the same run; and the agent's
// heap per remote endpoint afterwards (CLUSTERMESH_HEAP_PROFILE writes a
// heap profile then).
func BenchmarkIngestMesh(b *testing.B) {
	n := meshEnvInt(b, "CLUSTERMESH_BENCH_PEERS", 100)
	if n > 254 {
		b.Fatalf("CLUSTERMESH_BENCH_PEERS=%d: at most 254 peers in the 255-cluster layout", n)
	}
	m := meshPeer{nodes: 25, identities: meshEnvInt(b, "CLUSTERMESH_BENCH_IDENTITIES", 500),
		endpoints: meshEnvInt(b, "CLUSTERMESH_BENCH_ENDPOINTS", 5000), services: meshEnvInt(b, "CLUSTERMESH_BENCH_SERVICES", 200)}
	layout, err := identity.NewLayout(identity.MaxConnectedClusters255)
	if err != nil {
		b.Fatal(err)
	}
	etcd := kvtest.StartProcess(b, kvtest.Options{DataDir: meshDataDir()})
	cli := etcd.Connect(b)
	start := time.Now()
	populateMesh(b, cli.Etcd(), etcd.Paths, 2, n+1, m, layout)
	b.Logf("populated %d peers, %d keys, in %v", n, n*m.keys(), time.Since(start).Round(time.Millisecond))
	dir, cacheFile := writeMeshDir(b, etcd, 2, n+1)

	var raw, ingest time.Duration
	var perEndpoint float64
	iter := 0
	for b.Loop() {
		iter++
		start := time.Now()
		keys := 0
		for c := 2; c <= n+1; c++ {
			cp := etcd.Paths.Cache(peerName(c))
			for _, prefix := range []string{cp.ClusterNodesPrefix(peerName(c)), cp.IdentityIDPrefix(), cp.IPDefaultPrefix(), cp.ClusterServicesPrefix(peerName(c))} {
				end := clientv3.GetPrefixRangeEnd(prefix)
				from := prefix
				for {
					resp, err := cli.Etcd().Get(b.Context(), from, clientv3.WithRange(end), clientv3.WithLimit(5000))
					if err != nil {
						b.Fatal(err)
					}
					keys += len(resp.Kvs)
					if !resp.More {
						break
					}
					from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
				}
			}
		}
		raw += time.Since(start)
		if keys != n*m.keys() {
			b.Fatalf("raw read %d keys, want %d", keys, n*m.keys())
		}

		h0 := heap()
		start = time.Now()
		a := startMeshAgent(b, dir, cacheFile, etcd.Paths, identity.MaxConnectedClusters255, n)
		a.waitReady(b, 30*time.Minute)
		ingest += time.Since(start)
		if got := a.st.Snapshot().Count("ipcache"); got != n*m.endpoints {
			b.Fatalf("%d ip entries in the agent's state, want %d", got, n*m.endpoints)
		}
		perEndpoint = float64(heap()-h0) / float64(n*m.endpoints)
		if path := os.Getenv("CLUSTERMESH_HEAP_PROFILE"); path != "" {
			writeHeapProfile(b, path) // while every peer is connected
		}
		a.stop()
		runtime.KeepAlive(a)
	}
	b.Logf("%d peers × (%d endpoints, %d identities, %d services, %d nodes): agent ready in %v, raw paged read %v, ratio %.2f; heap per remote endpoint %.1f B",
		n, m.endpoints, m.identities, m.services, m.nodes, (ingest / time.Duration(iter)).Round(time.Millisecond),
		(raw / time.Duration(iter)).Round(time.Millisecond), ingest.Seconds()/raw.Seconds(), perEndpoint)
	b.ReportMetric(ingest.Seconds()/float64(iter), "ingest-s")
	b.ReportMetric(raw.Seconds()/float64(iter), "raw-paged-read-s")
	b.ReportMetric(ingest.Seconds()/raw.Seconds(), "ingest/raw")
	b.ReportMetric(perEndpoint, "heap-B/remote-endpoint")
}
