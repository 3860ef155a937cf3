package kvstore_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

// run starts f in a goroutine owned by the test: cancelled and waited for at
// cleanup, and a failure other than cancellation fails the test.
func run(t *testing.T, f func(ctx context.Context) error) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("background run: %v", err)
		}
	})
	return cancel
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, what, cond)
}

// recorder is a WatchHandler that keeps the mirrored state and the events.
type recorder struct {
	mu     sync.Mutex
	state  map[string]string
	events []string
	synced bool
}

func newRecorder() *recorder { return &recorder{state: map[string]string{}} }

func (r *recorder) OnUpsert(k string, v []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state[k] = string(v)
	r.events = append(r.events, "upsert "+k+"="+string(v))
}

func (r *recorder) OnDelete(k string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.state, k)
	r.events = append(r.events, "delete "+k)
}

func (r *recorder) OnSynced() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.synced = true
	r.events = append(r.events, "synced")
}

func (r *recorder) snapshot() (map[string]string, []string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.state), append([]string(nil), r.events...), r.synced
}

// etcdState reads every key under prefix.
func etcdState(t *testing.T, cli *clientv3.Client, prefix string) map[string]string {
	t.Helper()
	resp, err := cli.Get(t.Context(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("get %s: %v", prefix, err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

// leaseOf returns the lease a key is attached to (0 if absent).
func leaseOf(t *testing.T, cli *clientv3.Client, key string) clientv3.LeaseID {
	t.Helper()
	resp, err := cli.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

func keyN(prefix string, i int) string { return fmt.Sprintf("%sk%05d", prefix, i) }
