package kvstoremesh

import (
	"bytes"
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// statusInterval is how often the cache compares its peers' connection
// state with what it published.
const statusInterval = time.Second

// publishStatus keeps the connection state of every configured peer in the
// local etcd (schema.Paths.CacheStatus), where `clustermesh status` reads
// it: written when it changes, deleted when the peer is no longer
// configured, until ctx ends. A failed write is tried again at the next
// comparison.
func (c *Cache) publishStatus(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-c.peers.Scanned():
	}
	var written map[string][]byte // nil until the leftovers were read
	for {
		if written == nil {
			written = c.readStatus(ctx)
		}
		if written != nil {
			c.syncStatus(ctx, written)
		}
		t := time.NewTimer(statusInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// readStatus returns what is published (left by an earlier run), or nil
// if it cannot be read.
func (c *Cache) readStatus(ctx context.Context) map[string][]byte {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pre := c.cfg.Paths.CacheStatusPrefix()
	resp, err := c.cfg.Local.Etcd().Get(rctx, pre, clientv3.WithPrefix())
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("read the published connection state of the peers", "prefix", pre, "error", err)
		}
		return nil
	}
	out := map[string][]byte{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key[len(pre):])] = kv.Value
	}
	return out
}

// syncStatus writes what changed since written, and updates written.
func (c *Cache) syncStatus(ctx context.Context, written map[string][]byte) {
	want := map[string][]byte{}
	for _, st := range c.peers.Status() {
		v, err := schema.CachePeerState{Connected: st.Connected, Ready: st.Ready, Revoked: st.Revoked, Failures: st.Failures,
			LastFailure: st.LastFailure, LastFailureTime: st.LastFailureTime.UTC()}.Marshal()
		if err != nil { // cannot happen: plain fields
			c.log.Error("encode a peer's connection state", "peer", st.Name, "error", err)
			continue
		}
		want[st.Name] = v
	}
	p := c.cfg.Paths
	for name, v := range want {
		if bytes.Equal(written[name], v) {
			continue
		}
		if err := c.writeStatus(ctx, clientv3.OpPut(p.CacheStatus(name), string(v))); err != nil {
			c.log.Warn("publish a peer's connection state", "peer", name, "error", err)
			continue
		}
		written[name] = v
	}
	for name := range written {
		if _, ok := want[name]; ok {
			continue
		}
		if err := c.writeStatus(ctx, clientv3.OpDelete(p.CacheStatus(name))); err != nil {
			c.log.Warn("remove the connection state of a peer no longer configured", "peer", name, "error", err)
			continue
		}
		delete(written, name)
	}
}

func (c *Cache) writeStatus(ctx context.Context, op clientv3.Op) error {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.cfg.Local.Etcd().Do(wctx, op); err != nil {
		return fmt.Errorf("%s: %w", op.KeyBytes(), err)
	}
	return nil
}
