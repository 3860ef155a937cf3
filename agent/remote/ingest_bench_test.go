package remote_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

const (
	benchIPs        = 100_000
	benchIdentities = 10_000
	benchServices   = 2_000
	benchNodes      = 100 // each with a /20 pod CIDR: room for 409,600 IPs
)

// populatePeer writes a peer the size of a large cluster with a raw client.
func populatePeer(b *testing.B, cli *clientv3.Client, env *kvtest.Env) {
	b.Helper()
	p := env.Paths
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
	put(p.ClusterConfig("cluster2"), `{"id":2,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}`)
	for n := range benchNodes {
		put(p.Node("cluster2", fmt.Sprintf("node%03d", n)), fmt.Sprintf(
			`{"Name":"node%03d","Cluster":"cluster2","IPAddresses":[{"Type":"InternalIP","IP":"192.168.%d.%d"}],"IPv4AllocCIDR":{"IP":"10.%d.%d.0","Mask":"///wAA=="},"ClusterID":2}`,
			n, n/250, n%250+1, 100+n/16, (n%16)*16))
	}
	for i := range benchIdentities {
		put(p.Identity(uint32(131073+i)), fmt.Sprintf("k8s:app=app%d;k8s:io.cilium.k8s.policy.cluster=cluster2;k8s:io.kubernetes.pod.namespace=ns%d;", i, i%50))
	}
	for i := range benchIPs {
		n := i % benchNodes
		ip := fmt.Sprintf("10.%d.%d.%d", 100+n/16, (n%16)*16+(i/benchNodes)/254, (i/benchNodes)%254+1)
		put(p.IPDefaultPrefix()+ip, fmt.Sprintf(`{"IP":"%s","Mask":null,"HostIP":"192.168.%d.%d","ID":%d,"Key":0,"Metadata":"","K8sNamespace":"ns%d","K8sPodName":"pod-%d"}`,
			ip, n/250, n%250+1, 131073+i%benchIdentities, i%50, i))
	}
	for i := range benchServices {
		put(p.Service("cluster2", fmt.Sprintf("ns%d", i%50), fmt.Sprintf("svc%d", i)), fmt.Sprintf(
			`{"cluster":"cluster2","namespace":"ns%d","name":"svc%d","frontends":{"10.96.%d.%d":{"http":{"Protocol":"TCP","Port":80}}},"backends":{"10.100.0.%d":{"http":{"Protocol":"TCP","Port":8080}}},"labels":{},"selector":{},"includeExternal":true,"shared":true,"clusterID":2}`,
			i%50, i, i/250, i%250+1, i%254+1))
	}
	for _, prefix := range []string{p.NodesPrefix(), p.IdentitiesPrefix(), p.IPPrefix(), p.ServicesPrefix()} {
		put(p.Synced("cluster2", prefix), "2026-11-22T00:00:00Z")
	}
	flush(true)
}

// BenchmarkIngestPeer prints the time to ingest a peer with 100k ip
// entries, 10k identities and 2k services (100 nodes) until it is ready,
// through the validating connection into the agent's tables, next to a raw
// etcd range read of the same prefixes in the same run; and the agent's heap
// bytes per remote endpoint after ingest.
func BenchmarkIngestPeer(b *testing.B) {
	opts := kvtest.Options{Cluster: "cluster2", Plain: true}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		opts.DataDir = "/dev/shm"
	}
	env := kvtest.Start(b, opts)
	raw := env.Connect(b, "")
	populatePeer(b, raw.Etcd(), env)
	p := env.Paths

	var rawRead, ingest time.Duration
	var perEndpoint float64
	iter := 0
	for b.Loop() {
		iter++
		start := time.Now()
		n := 0
		for _, prefix := range []string{p.NodesPrefix() + "/", p.IdentityIDPrefix(), p.IPDefaultPrefix(), p.ServicesPrefix() + "/"} {
			resp, err := raw.Etcd().Get(b.Context(), prefix, clientv3.WithPrefix())
			if err != nil {
				b.Fatal(err)
			}
			n += len(resp.Kvs)
		}
		rawRead += time.Since(start)
		if n != benchNodes+benchIdentities+benchIPs+benchServices {
			b.Fatalf("raw read %d keys", n)
		}

		before := heap()
		st, err := state.New(nil)
		if err != nil {
			b.Fatal(err)
		}
		c, err := remote.New(remote.Config{
			Name: "cluster2", Client: env.ClientConfig(b, ""), Paths: p, LocalName: "cluster1", LocalID: 1,
			MaxConnectedClusters: 255, Registry: remote.NewRegistry("cluster1", 1), Sink: st.BufferedRemoteSink(), Backoff: fast,
		})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan struct{})
		start = time.Now()
		go func() { _ = c.Run(ctx); close(done) }()
		for !c.Status().Ready {
			time.Sleep(time.Millisecond)
		}
		ingest += time.Since(start)
		if got := st.Snapshot().Count("ipcache"); got != benchIPs {
			b.Fatalf("ingested %d ip entries, want %d (rejected: %v)", got, benchIPs, c.Status().Rejected)
		}
		// Measured while the peer is still connected: its validator's
		// bookkeeping and watches are part of what the agent holds.
		perEndpoint = float64(heap()-before) / benchIPs
		if os.Getenv("CLUSTERMESH_HEAP_PROFILE") != "" {
			writeHeapProfile(b, os.Getenv("CLUSTERMESH_HEAP_PROFILE"))
		}
		cancel()
		<-done
		runtime.KeepAlive(st)
		runtime.KeepAlive(c)
	}
	b.ReportMetric(ingest.Seconds()/float64(iter), "ingest-s")
	b.ReportMetric(rawRead.Seconds()/float64(iter), "raw-range-read-s")
	b.ReportMetric(ingest.Seconds()/rawRead.Seconds(), "ingest/raw")
	b.ReportMetric(perEndpoint, "heap-B/remote-endpoint")
}

// heap returns the live heap after a full collection.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}
