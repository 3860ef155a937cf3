package state

import (
	"net/netip"
	"sync"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// maxBuffered bounds the writes a BufferedRemoteSink holds before it
// commits on its own.
const maxBuffered = 4096

// BufferedRemoteSink returns a sink that buffers writes and commits them in
// one transaction when the remote connection says a batch read from etcd is
// done (remote.Flusher), before a Drain, or every 4096 writes. One
// transaction per etcd page instead of one per key is what makes ingesting a
// large peer cheap. Writes stay in order; a write that cannot be applied is
// logged and dropped without failing the others.
func (s *State) BufferedRemoteSink() interface {
	remote.Sink
	remote.Flusher
	remote.ReadyNotifier
} {
	return &bufferedSink{s: s}
}

type pendingOp struct {
	op, cluster string
	fn          func(*WriteTxn) error
}

type bufferedSink struct {
	s   *State
	mu  sync.Mutex // guards ops; held while committing, to keep order
	ops []pendingOp
}

func (b *bufferedSink) add(op, cluster string, fn func(*WriteTxn) error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ops = append(b.ops, pendingOp{op, cluster, fn})
	if len(b.ops) >= maxBuffered {
		b.flushLocked()
	}
}

// Flush commits the buffered writes.
func (b *bufferedSink) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *bufferedSink) flushLocked() {
	if len(b.ops) == 0 {
		return
	}
	ops := b.ops
	b.ops = nil
	err := b.s.Update(func(w *WriteTxn) error {
		for _, o := range ops {
			if err := o.fn(w); err != nil {
				b.s.log.Warn("dropping remote state change", "op", o.op, "cluster", o.cluster, "error", err)
			}
		}
		return nil
	})
	if err != nil {
		b.s.log.Warn("dropping a batch of remote state changes", "writes", len(ops), "error", err)
	}
}

func (b *bufferedSink) UpsertNode(cluster string, n schema.Node) {
	b.add("upsert node", cluster, func(w *WriteTxn) error { return w.UpsertNode(cluster, n) })
}

func (b *bufferedSink) DeleteNode(cluster, name string) {
	b.add("delete node", cluster, func(w *WriteTxn) error { return w.DeleteNode(cluster, name) })
}

func (b *bufferedSink) UpsertIdentity(cluster string, id identity.NumericIdentity, labels identity.Labels) {
	b.add("upsert identity", cluster, func(w *WriteTxn) error { return w.UpsertIdentity(cluster, id, labels) })
}

func (b *bufferedSink) DeleteIdentity(cluster string, id identity.NumericIdentity) {
	b.add("delete identity", cluster, func(w *WriteTxn) error { return w.DeleteIdentity(cluster, id) })
}

func (b *bufferedSink) UpsertIP(cluster string, prefix netip.Prefix, e schema.IPEntry) {
	row := IPCacheFromSchema(cluster, prefix, e)
	b.add("upsert ip", cluster, func(w *WriteTxn) error { return w.UpsertIP(row) })
}

func (b *bufferedSink) DeleteIP(cluster string, prefix netip.Prefix) {
	b.add("delete ip", cluster, func(w *WriteTxn) error { return w.DeleteIP(cluster, prefix) })
}

func (b *bufferedSink) UpsertService(cluster string, cs schema.ClusterService) {
	b.add("upsert service", cluster, func(w *WriteTxn) error { return w.UpsertService(cluster, cs) })
}

func (b *bufferedSink) DeleteService(cluster, namespace, name string) {
	b.add("delete service", cluster, func(w *WriteTxn) error { return w.DeleteService(cluster, namespace, name) })
}

// Drain commits what is buffered, then removes the cluster.
func (b *bufferedSink) Drain(cluster string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ops = append(b.ops, pendingOp{"drain", cluster, func(w *WriteTxn) error { return w.Drain(cluster) }})
	b.flushLocked()
}

// SetReady commits what is buffered, then records the peer's readiness as
// the source PeerSource(cluster), which wakes every reader waiting for a
// change (reconcilers that may prune only once every peer is ready).
func (b *bufferedSink) SetReady(cluster string, ready bool) {
	b.Flush()
	b.s.SetInitialized(PeerSource(cluster), ready)
}
