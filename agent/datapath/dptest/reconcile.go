package dptest

import (
	"context"
	"maps"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

// Source is desired state that a test changes, for a reconciler: a full
// source (Desired, Changed) and an incremental one (Incremental).
type Source[K comparable, V any] struct {
	mu          sync.Mutex // guards everything below
	want        map[K]V
	initialized bool
	ch          chan struct{}
	// For Incremental: the keys Set changed since the last Next, and
	// whether the first Next (a full pass) is still to come.
	changed map[K]struct{}
	wake    chan struct{}
	started bool
}

// NewSource returns an empty, uninitialized source.
func NewSource[K comparable, V any]() *Source[K, V] {
	return &Source[K, V]{want: map[K]V{}, ch: make(chan struct{}), changed: map[K]struct{}{}, wake: make(chan struct{}, 1)}
}

// Set changes the desired state with f and sets whether the source is
// initialized; the reconciler is told.
func (s *Source[K, V]) Set(f func(map[K]V), initialized bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := maps.Clone(s.want)
	f(s.want)
	for k, v := range s.want {
		if old, ok := before[k]; !ok || !reflect.DeepEqual(old, v) {
			s.changed[k] = struct{}{}
		}
	}
	for k := range before {
		if _, ok := s.want[k]; !ok {
			s.changed[k] = struct{}{}
		}
	}
	s.initialized = initialized
	close(s.ch)
	s.ch = make(chan struct{})
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Incremental returns the source as a reconciler.Incremental.
func (s *Source[K, V]) Incremental() reconciler.Incremental[K, V] { return incremental[K, V]{s} }

type incremental[K comparable, V any] struct{ s *Source[K, V] }

func (i incremental[K, V]) Changed() <-chan struct{} { return i.s.wake }

func (i incremental[K, V]) Next() (reconciler.View[K, V], []K, bool) {
	s := i.s
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]K, 0, len(s.changed))
	for k := range s.changed {
		keys = append(keys, k)
	}
	clear(s.changed)
	full := !s.started
	s.started = true
	return view[K, V](maps.Clone(s.want)), keys, full
}

type view[K comparable, V any] map[K]V

func (v view[K, V]) At(k K) (V, bool) { x, ok := v[k]; return x, ok }
func (v view[K, V]) All() map[K]V     { return maps.Clone(map[K]V(v)) }

// Desired is reconciler.Config.Desired.
func (s *Source[K, V]) Desired() map[K]V {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.want)
}

// Initialized is reconciler.Config.Initialized.
func (s *Source[K, V]) Initialized() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.initialized
}

// Changed is reconciler.Config.Changed.
func (s *Source[K, V]) Changed(context.Context) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

// Start runs a reconciler of table driven by src until the test ends, with
// short retries.
func Start[K comparable, V any](t *testing.T, table datapath.Table[K, V], src *Source[K, V]) *reconciler.Reconciler[K, V] {
	t.Helper()
	return StartMode(t, table, src, false)
}

// StartMode is Start, with src read incrementally when incremental is set.
func StartMode[K comparable, V any](t *testing.T, table datapath.Table[K, V], src *Source[K, V], incremental bool) *reconciler.Reconciler[K, V] {
	t.Helper()
	return StartWith(t, table, src, Options{Incremental: incremental})
}

// Options of StartWith.
type Options struct {
	Incremental  bool // read src incrementally
	TrackObjects bool // reconciler.Config.TrackObjects
}

// StartWith is Start with options.
func StartWith[K comparable, V any](t *testing.T, table datapath.Table[K, V], src *Source[K, V], opts Options) *reconciler.Reconciler[K, V] {
	t.Helper()
	cfg := reconciler.Config[K, V]{
		Name: "test", Table: table, Desired: src.Desired, Initialized: src.Initialized, Changed: src.Changed,
		Retry:        backoff.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		TrackObjects: opts.TrackObjects,
	}
	if opts.Incremental {
		cfg.Incremental = src.Incremental()
	}
	r := reconciler.New(cfg)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// Eventually waits up to 10s for cond.
func Eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, what, cond)
}

// Held returns what table lists, failing the test on an error.
func Held[K comparable, V any](t *testing.T, table datapath.Table[K, V]) map[K]V {
	t.Helper()
	m, err := table.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return m
}

// counting is a table that counts the Update and Delete calls made to it.
type counting[K comparable, V any] struct {
	datapath.Table[K, V]
	mu               sync.Mutex // guards the counters
	updates, deletes int
}

func (c *counting[K, V]) Update(ctx context.Context, k K, v V) error {
	c.mu.Lock()
	c.updates++
	c.mu.Unlock()
	return c.Table.Update(ctx, k, v)
}

func (c *counting[K, V]) Delete(ctx context.Context, k K) error {
	c.mu.Lock()
	c.deletes++
	c.mu.Unlock()
	return c.Table.Delete(ctx, k)
}

func (c *counting[K, V]) calls() (updates, deletes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.updates, c.deletes
}

// ReconcileCase is a table and sample objects for Reconcile.
type ReconcileCase[K comparable, V any] struct {
	// Table is where a previous agent wrote.
	Table datapath.Table[K, V]
	// Restart returns the same table of a datapath reopened over the same
	// kernel state (an agent restart); nil keeps Table.
	Restart func(t *testing.T) datapath.Table[K, V]
	// Live and Stale are in the table at start; Live and New are desired.
	Live, Stale, New K
	// V1 and V2 are different values.
	V1, V2 V
	// Incremental drives the reconciler with Source.Incremental.
	Incremental bool
	// Kept is what the table keeps of a value (nil: the whole value, see
	// Kept). A Live value the table does not keep whole is rewritten once
	// by the reconciler that adopts it.
	Kept func(V) V
}

// Reconcile checks a reconciler against a table: it adopts what the table
// holds at start (and does not write a value again that the table lists
// whole, while it rewrites one the table keeps only in part), removes
// nothing before the sources are initialized, then removes exactly what is
// not desired, and follows later changes.
func Reconcile[K comparable, V any](t *testing.T, c ReconcileCase[K, V]) *reconciler.Reconciler[K, V] {
	t.Helper()
	ctx := t.Context()
	for _, k := range []K{c.Live, c.Stale} {
		if err := c.Table.Update(ctx, k, c.V1); err != nil {
			t.Fatalf("Update by the previous agent: %v", err)
		}
	}
	tbl := c.Table
	if c.Restart != nil {
		tbl = c.Restart(t)
	}
	ct := &counting[K, V]{Table: tbl}
	src := NewSource[K, V]()
	r := StartMode(t, ct, src, c.Incremental)
	kept := c.Kept
	if kept == nil {
		kept = func(v V) V { return v }
	}
	is := func(want map[K]V) func() bool {
		return func() bool { return reflect.DeepEqual(KeptAll(want, kept), Held(t, tbl)) }
	}

	src.Set(func(m map[K]V) { m[c.Live] = c.V1; m[c.New] = c.V2 }, false)
	Eventually(t, "new object applied", func() bool {
		v, ok := Held(t, tbl)[c.New]
		return ok && reflect.DeepEqual(v, kept(c.V2))
	})
	if _, ok := Held(t, tbl)[c.Stale]; !ok {
		t.Fatal("pruned before the sources were initialized")
	}
	src.Set(func(map[K]V) {}, true)
	Eventually(t, "stale object pruned", is(map[K]V{c.Live: c.V1, c.New: c.V2}))
	Eventually(t, "status after the prune", func() bool {
		st := r.Status()
		return st.Pruned && st.Applied == 2 && st.Desired == 2 && st.Failing == 0
	})
	wantUpdates := 1 // New
	if !reflect.DeepEqual(kept(c.V1), c.V1) {
		wantUpdates++ // Live, listed in part: rewritten
	}
	if u, d := ct.calls(); u != wantUpdates || d != 1 {
		t.Fatalf("reconciler made %d updates and %d deletes, want %d (new, and live if the table keeps it in part) and 1 (stale): "+
			"an adopted value was written again although listed whole, or not rewritten although listed in part", u, d, wantUpdates)
	}

	src.Set(func(m map[K]V) { m[c.Live] = c.V2; delete(m, c.New) }, true)
	Eventually(t, "change and delete applied", is(map[K]V{c.Live: c.V2}))
	return r
}
