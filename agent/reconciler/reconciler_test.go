package reconciler_test

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/internal/testutil"
)

// source is a desired state that tests change.
type source struct {
	mu          sync.Mutex
	want        map[string]int
	initialized bool
	ch          chan struct{}
}

func newSource() *source { return &source{want: map[string]int{}, ch: make(chan struct{})} }

func (s *source) set(f func(map[string]int), initialized bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.want)
	s.initialized = initialized
	close(s.ch)
	s.ch = make(chan struct{})
}

func (s *source) desired() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.want)
}
func (s *source) isInit() bool             { s.mu.Lock(); defer s.mu.Unlock(); return s.initialized }
func (s *source) changed() <-chan struct{} { s.mu.Lock(); defer s.mu.Unlock(); return s.ch }

func start(t *testing.T, table *datapath.MemTable[string, int], src *source) *reconciler.Reconciler[string, int] {
	t.Helper()
	r := reconciler.New(reconciler.Config[string, int]{
		Name: "test", Table: table, Desired: src.desired, Initialized: src.isInit, Changed: src.changed,
		Retry: backoff.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond},
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, what, cond)
}

func held(t *testing.T, table *datapath.MemTable[string, int]) map[string]int {
	t.Helper()
	m, _ := table.List(t.Context())
	return m
}

// What the kernel holds at start (pinned maps after an agent restart) stays
// until the sources are initialized; then only what is not desired goes.
func TestAdoptsAndPrunesOnlyWhenInitialized(t *testing.T) {
	table := datapath.NewMemTable[string, int]()
	_ = table.Update(t.Context(), "live", 1)
	_ = table.Update(t.Context(), "stale", 1)
	src := newSource()
	r := start(t, table, src)

	src.set(func(m map[string]int) { m["live"] = 1; m["new"] = 2 }, false)
	eventually(t, "new applied", func() bool { return held(t, table)["new"] == 2 })
	if _, ok := held(t, table)["stale"]; !ok {
		t.Fatal("pruned before the sources were initialized")
	}
	src.set(func(map[string]int) {}, true)
	eventually(t, "stale pruned", func() bool { return cmp.Equal(map[string]int{"live": 1, "new": 2}, held(t, table)) })
	if st := r.Status(); !st.Pruned || st.Applied != 2 || st.Desired != 2 {
		t.Fatalf("status %+v", st)
	}
	if u, _ := table.Ops(); u != 3 { // live and stale by the test, new by the reconciler
		t.Fatalf("updates = %d: an equal value was written again", u)
	}
}

// A failing object is retried with backoff until it succeeds; the others
// are not held back.
func TestPerObjectRetry(t *testing.T) {
	table := datapath.NewMemTable[string, int]()
	var mu sync.Mutex
	broken := true
	table.FailWith(func(k string) error {
		mu.Lock()
		defer mu.Unlock()
		if k == "bad" && broken {
			return errors.New("map full")
		}
		return nil
	})
	src := newSource()
	r := start(t, table, src)
	src.set(func(m map[string]int) { m["good"] = 1; m["bad"] = 1 }, true)
	eventually(t, "good applied, bad failing", func() bool {
		st := r.Status()
		return held(t, table)["good"] == 1 && st.Failing == 1 && st.LastError != ""
	})
	mu.Lock()
	broken = false
	mu.Unlock()
	eventually(t, "bad applied after retries", func() bool { return held(t, table)["bad"] == 1 && r.Status().Failing == 0 })

	// Changing a value and removing one reach the table.
	src.set(func(m map[string]int) { m["good"] = 2; delete(m, "bad") }, true)
	eventually(t, "update and delete", func() bool { return cmp.Equal(map[string]int{"good": 2}, held(t, table)) })
}
