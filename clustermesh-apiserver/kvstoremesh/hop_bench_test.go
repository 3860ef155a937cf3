package kvstoremesh_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"sigs.k8s.io/yaml"

	"github.com/clustermesh/clustermesh/clustermesh-apiserver/kvstoremesh"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// hopKey is the key of the i-th ip entry under prefix.
func hopKey(prefix string, i int) string {
	return prefix + fmt.Sprintf("10.2.%d.%d", i/250, i%250+1)
}

// measureHop writes updates ip entries to writer under writePrefix at rate
// per second, each carrying its sequence number, while one raw watch on
// watcher follows watchPrefix, and returns, sorted, how long each update
// took from its due time to its arrival in the watch.
func measureHop(ctx context.Context, b *testing.B, writer *clientv3.Client, writePrefix string, watcher *clientv3.Client, watchPrefix string, rate, updates int) []time.Duration {
	b.Helper()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := watcher.Watch(wctx, watchPrefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if wr := <-wch; !wr.Created || wr.Err() != nil {
		b.Fatalf("watch %s: %v", watchPrefix, wr.Err())
	}
	start := time.Now()
	arrived := make([]time.Duration, updates)
	got := make(chan int, 1)
	go func() { // owns arrived until it sends on got
		n := 0
		for wr := range wch {
			for _, ev := range wr.Events {
				seq, ok := parseSeq(ev.Kv.Value)
				if !ok || seq >= updates || arrived[seq] != 0 {
					continue
				}
				arrived[seq] = time.Since(start)
				n++
			}
			if n == updates {
				break
			}
		}
		got <- n
	}()
	written := make([]time.Duration, updates)
	interval := time.Second / time.Duration(rate)
	for seq := range updates {
		written[seq] = time.Duration(seq) * interval // due: a late Put counts from when it was due
		if d := time.Until(start.Add(written[seq])); d > 0 {
			time.Sleep(d) // the writer's pace, not a wait for a result
		}
		i := seq % fanoutKeys
		if _, err := writer.Put(ctx, hopKey(writePrefix, i), fanoutEntry(i, seq)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case n := <-got:
		if n != updates {
			b.Fatalf("watch of %s ended after %d of %d updates", watchPrefix, n, updates)
		}
	case <-time.After(2 * time.Minute):
		cancel()
		b.Fatalf("not every update reached the watch of %s within 2m of the last write", watchPrefix)
	}
	lat := make([]time.Duration, updates)
	for seq := range updates {
		lat[seq] = arrived[seq] - written[seq]
	}
	slices.Sort(lat)
	return lat
}

// handMirror is the least a cache can do: copy the peer's prefix from into
// the local etcd under to, call ready, then watch the peer from the next
// revision and put every event into the local etcd, one Put per event, in
// order, until ctx ends. No validation, no leases, no batching.
func handMirror(ctx context.Context, peer, local *clientv3.Client, from, to string, ready func() error) error {
	resp, err := peer.Get(ctx, from, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("list %s: %w", from, err)
	}
	var ops []clientv3.Op
	for _, kv := range resp.Kvs {
		ops = append(ops, clientv3.OpPut(to+string(kv.Key[len(from):]), string(kv.Value)))
	}
	for len(ops) > 0 {
		n := min(len(ops), 128)
		if _, err := local.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return fmt.Errorf("copy %s: %w", from, err)
		}
		ops = ops[n:]
	}
	wch := peer.Watch(ctx, from, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1), clientv3.WithCreatedNotify())
	if wr := <-wch; !wr.Created || wr.Err() != nil {
		return fmt.Errorf("watch %s: %w", from, wr.Err())
	}
	if err := ready(); err != nil {
		return err
	}
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", from, err)
		}
		for _, ev := range wr.Events {
			key := to + string(ev.Kv.Key[len(from):])
			if _, err := local.Put(ctx, key, string(ev.Kv.Value)); err != nil {
				return fmt.Errorf("put %s: %w", key, err)
			}
		}
	}
	return ctx.Err()
}

// writeMeshDir writes a mesh configuration directory with the peer's client
// config, as the cache reads it.
func writeMeshDir(b *testing.B, peer *kvtest.Process) string {
	b.Helper()
	dir := b.TempDir()
	y, err := yaml.Marshal(peer.ClientConfig())
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, peer.Cluster), y, 0o600); err != nil {
		b.Fatal(err)
	}
	return dir
}

// startCacheInProcess runs the cache in this process until the returned
// stop, once it synced the peer.
func startCacheInProcess(ctx context.Context, b *testing.B, local *kvtest.Process, dir string) (stop func()) {
	b.Helper()
	c, err := kvstoremesh.New(kvstoremesh.Config{Local: local.Connect(b), Paths: schema.DefaultPaths(), LocalName: "cluster1", LocalID: 1,
		MaxConnectedClusters: 255, MeshConfigDir: dir, PollInterval: 50 * time.Millisecond, Backoff: meshtest.Fast})
	if err != nil {
		b.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = c.Run(cctx); close(done) }()
	stop = func() { cancel(); <-done }
	deadline := time.Now().Add(2 * time.Minute)
	for !cacheSynced(c, "cluster2") {
		if time.Now().After(deadline) {
			stop()
			b.Fatalf("cache of cluster2 not synced within 2m: %+v", c.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return stop
}

type hopMode int

const (
	hopRaw        hopMode = iota // put -> watch on one etcd
	hopHandMirror                // put -> watch -> put -> watch, hand-written
	hopCache                     // put -> the cache -> watch, cache in this process
	hopCacheChild                // the same, cache in a process of its own
)

func (m hopMode) String() string {
	return [...]string{"raw etcd put->watch", "hand-written mirror", "cache (in process)", "cache (own process)"}[m]
}

func runHop(b *testing.B, mode hopMode, rate, updates int) []time.Duration {
	b.Helper()
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	peer := kvtest.StartProcess(b, kvtest.Options{Cluster: "cluster2", DataDir: shmDir()})
	writer := peer.Connect(b).Etcd()
	paths := peer.Paths
	populateFanoutPeer(b, writer, paths)
	if mode == hopRaw {
		return measureHop(ctx, b, writer, paths.IPDefaultPrefix(), peer.Connect(b).Etcd(), paths.IPDefaultPrefix(), rate, updates)
	}
	local := kvtest.StartProcess(b, kvtest.Options{Cluster: "cluster1", DataDir: shmDir()})
	cacheIPs := paths.Cache("cluster2").IPDefaultPrefix()
	switch mode {
	case hopHandMirror:
		ready, done := make(chan struct{}), make(chan error, 1)
		mctx, mcancel := context.WithCancel(ctx)
		peerCli, localCli := peer.Connect(b).Etcd(), local.Connect(b).Etcd()
		go func() {
			done <- handMirror(mctx, peerCli, localCli, paths.IPDefaultPrefix(), cacheIPs, func() error { close(ready); return nil })
		}()
		defer func() { mcancel(); <-done }()
		select {
		case <-ready:
		case err := <-done:
			b.Fatal(err)
		}
	case hopCache:
		defer startCacheInProcess(ctx, b, local, writeMeshDir(b, peer))()
	case hopCacheChild:
		startCacheProcess(b, local, writeMeshDir(b, peer))
	}
	return measureHop(ctx, b, writer, paths.IPDefaultPrefix(), local.Connect(b).Etcd(), cacheIPs, rate, updates)
}

// BenchmarkCacheHop measures the cache's hop alone: from a Put on the
// peer's etcd to the cache's write arriving in a watch of the local etcd,
// at CLUSTERMESH_BENCH_RATE updates/s (default 100) for
// CLUSTERMESH_BENCH_SECONDS (default 10), with no agents, next to two
// baselines in the same run: a raw put->watch on one etcd, and a
// hand-written mirror (watch the peer, Put each event into the local etcd,
// watch the local etcd). Every etcd and the cache in its own process (the
// cache also in this one, to show what sharing a process costs).
func BenchmarkCacheHop(b *testing.B) {
	rate := benchEnvInt(b, "CLUSTERMESH_BENCH_RATE", 100)
	seconds := benchEnvInt(b, "CLUSTERMESH_BENCH_SECONDS", 10)
	updates := rate * seconds
	modes := []hopMode{hopRaw, hopHandMirror, hopCache, hopCacheChild}
	res := map[hopMode][]time.Duration{}
	for b.Loop() {
		for _, m := range modes {
			res[m] = runHop(b, m, rate, updates)
		}
	}
	p := func(lat []time.Duration, q int) time.Duration { return lat[len(lat)*q/100] }
	b.Logf("%d updates/s for %d s", rate, seconds)
	for _, m := range modes {
		l := res[m]
		b.Logf("%-20s p50 %v p99 %v max %v", m, p(l, 50), p(l, 99), l[len(l)-1])
	}
	raw, mirror, child := res[hopRaw], res[hopHandMirror], res[hopCacheChild]
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(p(raw, 50)), "p50-ms-raw")
	b.ReportMetric(ms(p(mirror, 50)), "p50-ms-mirror")
	b.ReportMetric(ms(p(res[hopCache], 50)), "p50-ms-cache-inproc")
	b.ReportMetric(ms(p(child, 50)), "p50-ms-cache")
	b.ReportMetric(ms(p(child, 99)), "p99-ms-cache")
	b.ReportMetric(ms(p(mirror, 99)), "p99-ms-mirror")
	b.ReportMetric(float64(p(child, 50))/float64(p(mirror, 50)), "p50-cache/mirror")
	b.ReportMetric(float64(p(child, 99))/float64(p(mirror, 99)), "p99-cache/mirror")
}
