package controller

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestReconcilesRetriesAndSignalsInitialSync(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	c := New("test", func(_ context.Context, key string) error {
		mu.Lock()
		defer mu.Unlock()
		calls[key]++
		if key == "flaky" && calls[key] < 3 {
			return errors.New("not yet")
		}
		return nil
	}, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { c.Run(ctx, 2); close(done) }()
	c.SetInitial([]string{"a", "flaky"})
	select {
	case <-c.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("initial keys never all reconciled")
	}
	mu.Lock()
	if calls["flaky"] != 3 || calls["a"] != 1 {
		t.Fatalf("calls = %v, want flaky retried until success (3) and a once", calls)
	}
	mu.Unlock()
	cancel()
	<-done
}

func TestEmptyInitialIsSynced(t *testing.T) {
	c := New("empty", func(context.Context, string) error { return nil }, nil)
	c.SetInitial(nil)
	select {
	case <-c.Synced():
	default:
		t.Fatal("an empty initial set is not synced")
	}
}
