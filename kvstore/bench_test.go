package kvstore_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

const benchKeys = 100_000

// benchValue is the size of a typical ip entry.
var benchValue = []byte(`{"IP":"10.1.2.3","Mask":null,"HostIP":"192.168.1.10","ID":65536,"Key":0,"Metadata":"","K8sNamespace":"default","K8sPodName":"x-wing-7d9f8b6c5-abcde"}`)

func benchEnv(b *testing.B) *kvstore.Client {
	b.Helper()
	opts := kvtest.Options{Plain: true}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		opts.DataDir = "/dev/shm" // measure the client, not the disk
	}
	env := kvtest.Start(b, opts)
	return env.Connect(b, "")
}

// rawWrite writes n keys with a plain etcd client: workers goroutines, one
// lease per 1000 keys like the writer, and batch operations per transaction
// (batch 1: one Put per key).
func rawWrite(ctx context.Context, cli *clientv3.Client, prefix string, n, workers, batch int) error {
	leases := make([]clientv3.LeaseID, (n+999)/1000)
	for i := range leases {
		l, err := cli.Grant(ctx, 900)
		if err != nil {
			return err
		}
		leases[i] = l.ID
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	per := (n + workers - 1) / workers
	for w := range workers {
		wg.Go(func() {
			lo, hi := w*per, min((w+1)*per, n)
			for i := lo; i < hi; i += batch {
				ops := make([]clientv3.Op, 0, batch)
				for j := i; j < min(i+batch, hi); j++ {
					ops = append(ops, clientv3.OpPut(keyN(prefix, j), string(benchValue), clientv3.WithLease(leases[j/1000])))
				}
				var err error
				if len(ops) == 1 {
					_, err = cli.Do(ctx, ops[0])
				} else {
					_, err = cli.Txn(ctx).Then(ops...).Commit()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// BenchmarkWriter writes 100k keys through the SyncStore (until its synced
// marker is in etcd) and with a raw client in the same run, and prints each
// time and the ratios.
func BenchmarkWriter(b *testing.B) {
	cli := benchEnv(b)
	ctx := b.Context()
	var rawPuts, rawTxn, writer time.Duration
	iter := 0
	for b.Loop() {
		iter++
		start := time.Now()
		if err := rawWrite(ctx, cli.Etcd(), fmt.Sprintf("raw-put/%d/", iter), benchKeys, 4, 1); err != nil {
			b.Fatal(err)
		}
		rawPuts += time.Since(start)

		// The batched raw baseline runs before and after the writer, so
		// that neither side always meets the larger database.
		start = time.Now()
		if err := rawWrite(ctx, cli.Etcd(), fmt.Sprintf("raw-txn-a/%d/", iter), benchKeys, 4, 64); err != nil {
			b.Fatal(err)
		}
		rawTxn += time.Since(start)

		prefix := fmt.Sprintf("writer/%d/", iter)
		s, err := kvstore.NewSyncStore(cli, kvstore.SyncStoreConfig{Prefix: prefix, SyncedKey: "synced/" + prefix})
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		for i := range benchKeys {
			if err := s.Upsert(keyN(prefix, i), benchValue); err != nil {
				b.Fatal(err)
			}
		}
		s.Synced()
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(rctx) }()
		for !s.Status().Synced {
			time.Sleep(time.Millisecond)
		}
		writer += time.Since(start)
		cancel()
		<-done

		start = time.Now()
		if err := rawWrite(ctx, cli.Etcd(), fmt.Sprintf("raw-txn-b/%d/", iter), benchKeys, 4, 64); err != nil {
			b.Fatal(err)
		}
		rawTxn += time.Since(start)
	}
	rawTxn /= 2
	n := float64(iter)
	b.ReportMetric(float64(benchKeys)*n/writer.Seconds(), "writer-keys/s")
	b.ReportMetric(float64(benchKeys)*n/rawPuts.Seconds(), "raw-put-keys/s")
	b.ReportMetric(float64(benchKeys)*n/rawTxn.Seconds(), "raw-txn-keys/s")
	b.ReportMetric(writer.Seconds()/rawPuts.Seconds(), "writer/raw-put")
	b.ReportMetric(writer.Seconds()/rawTxn.Seconds(), "writer/raw-txn")
}

type countHandler struct {
	n      int
	synced chan struct{}
}

func (h *countHandler) OnUpsert(string, []byte) { h.n++ }
func (h *countHandler) OnDelete(string)         { h.n-- }
func (h *countHandler) OnSynced()               { close(h.synced) }

// BenchmarkReaderInitialList reads 100k keys with a WatchStore until it is
// synced, next to a raw client reading the same prefix in one range request
// in the same run, and prints each and the ratio.
func BenchmarkReaderInitialList(b *testing.B) {
	cli := benchEnv(b)
	ctx := b.Context()
	const prefix = "reader/"
	if err := rawWrite(ctx, cli.Etcd(), prefix, benchKeys, 4, 64); err != nil {
		b.Fatal(err)
	}
	var raw, reader time.Duration
	iter := 0
	for b.Loop() {
		iter++
		start := time.Now()
		resp, err := cli.Etcd().Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			b.Fatal(err)
		}
		seen := make(map[string]int64, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			seen[string(kv.Key)] = kv.ModRevision
		}
		raw += time.Since(start)
		if len(seen) != benchKeys {
			b.Fatalf("raw read %d keys", len(seen))
		}

		h := &countHandler{synced: make(chan struct{})}
		w, err := kvstore.NewWatchStore(cli, kvstore.WatchStoreConfig{Prefix: prefix}, h)
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		start = time.Now()
		go func() { done <- w.Run(rctx) }()
		<-h.synced
		reader += time.Since(start)
		cancel()
		<-done
		if h.n != benchKeys {
			b.Fatalf("reader saw %d keys", h.n)
		}
	}
	n := float64(iter)
	b.ReportMetric(float64(benchKeys)*n/reader.Seconds(), "reader-keys/s")
	b.ReportMetric(float64(benchKeys)*n/raw.Seconds(), "raw-keys/s")
	b.ReportMetric(reader.Seconds()/raw.Seconds(), "reader/raw")
}
