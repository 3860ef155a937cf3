package remote_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/kvstore"
)

// countHandler counts log records by message.
type countHandler struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n[r.Message]++
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

func (h *countHandler) count(prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for m, c := range h.n {
		if strings.HasPrefix(m, prefix) {
			n += c
		}
	}
	return n
}

func clusterConfig(id uint32) string {
	return fmt.Sprintf(`{"id":%d,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}`, id)
}

// A peer flipping its cluster config makes the agent reconnect with
// backoff, not at the peer's pace, and log once per reconnection; once it
// stops, the peer is read again.
func TestClusterConfigFlapsBackOff(t *testing.T) {
	for _, tc := range []struct {
		name string
		flip func(ctx context.Context, etcd *clientv3.Client, key string, i int) error
	}{
		{name: "cluster ID flipping", flip: func(ctx context.Context, etcd *clientv3.Client, key string, i int) error {
			_, err := etcd.Put(ctx, key, clusterConfig([]uint32{2, 7}[i%2]))
			return err
		}},
		{name: "config key deleted and written again", flip: func(ctx context.Context, etcd *clientv3.Client, key string, i int) error {
			var err error
			if i%2 == 0 {
				_, err = etcd.Delete(ctx, key)
			} else {
				_, err = etcd.Put(ctx, key, clusterConfig(2))
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startNamedPeer(t, "cluster2", 2)
			admin := p.Env.Connect(t, kvstore.AdminUser)
			logs := &countHandler{n: map[string]int{}}
			sink := newMemSink()
			c, err := remote.New(remote.Config{
				Name: "cluster2", Client: p.Env.ClientConfig(t, kvstore.RemoteUser), Paths: p.Env.Paths,
				LocalName: "cluster1", LocalID: 1, MaxConnectedClusters: 255, Registry: remote.NewRegistry("cluster1", 1),
				Sink: sink, Backoff: fast, Log: slog.New(logs),
			})
			if err != nil {
				t.Fatal(err)
			}
			meshtest.Go(t, c.Run)
			eventually(t, "peer ready", func() bool { return c.Status().Ready })

			// Up to 100 changes a second for 2 s. Without backoff this made
			// ~150 reconnections. With the test's backoff (20 ms doubling
			// to 200 ms, less up to 20% jitter) the delays before the n-th
			// reconnection add up to at least 16+32+64+128 ms then 160 ms
			// each: over a window w at most 5 + w/160ms reconnections fit,
			// however fast the machine (a slow one makes fewer).
			key := p.Env.Paths.ClusterConfig(p.Name)
			before, start := c.Status().Failures, time.Now()
			flips := 0
			for time.Since(start) < 2*time.Second {
				if err := tc.flip(t.Context(), admin.Etcd(), key, flips); err != nil {
					t.Fatal(err)
				}
				flips++
				time.Sleep(10 * time.Millisecond)
			}
			reconnects := c.Status().Failures - before
			window := time.Since(start)
			if _, err := admin.Etcd().Put(t.Context(), key, clusterConfig(2)); err != nil {
				t.Fatal(err)
			}
			bound := 5 + uint64(window/(160*time.Millisecond))
			t.Logf("%d reconnections for %d changes in %v (bound %d)", reconnects, flips, window, bound)
			if reconnects > bound {
				t.Errorf("%d reconnections for %d config changes in %v: want at most %d (backoff)", reconnects, flips, window, bound)
			}
			if reconnects == 0 {
				t.Error("no reconnection while the peer's config flapped")
			}
			if n := logs.count("peer's cluster config changed"); n > int(reconnects)+1 {
				t.Errorf("%d log lines for %d reconnections: want one per reconnection", n, reconnects)
			}
			eventually(t, "peer read again once its config is stable", func() bool {
				st := c.Status()
				return st.Ready && st.ClusterID == 2 && sink.has("node cluster2/n1")
			})
		})
	}
}
