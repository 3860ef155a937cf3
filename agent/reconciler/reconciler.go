// Package reconciler drives one datapath table from desired state: it
// computes the whole desired set (level-based), applies what differs from
// what it knows the kernel holds, retries each failed object with its own
// backoff, and prunes objects no longer desired only once every source is
// initialized.
//
// Rules: at start the reconciler adopts what the table already holds (pinned
// kernel state after an agent restart) and removes nothing of it before the
// sources are initialized; only Run touches the table; Status may be called
// from anywhere.
package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/internal/clock"
)

// Config of a Reconciler.
type Config[K comparable, V any] struct {
	Name  string
	Table datapath.Table[K, V]
	// Desired returns the complete desired state.
	Desired func() map[K]V
	// Initialized reports whether every source has delivered its initial
	// state; nothing is pruned before.
	Initialized func() bool
	// Changed returns a channel closed when the sources change next (or
	// ctx ends).
	Changed func(ctx context.Context) <-chan struct{}
	// Incremental, when set, replaces Desired and Changed: see
	// Incremental.
	Incremental Incremental[K, V]
	// Equal compares values (default reflect.DeepEqual).
	Equal func(a, b V) bool
	// Retry is the per-object backoff template (defaults of backoff).
	Retry backoff.Backoff
	// TrackObjects keeps each key's status for Object and Watch (for
	// small tables whose consumers wait for one object).
	TrackObjects bool
	// Capacity is how many objects the table can hold (0: unbounded),
	// reported in Status so that pressure on a kernel map shows before it
	// is full.
	Capacity int
	// Resync bounds the time between two full passes (default 1m).
	Resync time.Duration
	Clock  clock.Clock
	Log    *slog.Logger
}

// Status is a reconciler's health.
type Status struct {
	Name    string `json:"name"`
	Desired int    `json:"desired"`
	Applied int    `json:"applied"`
	Failing int    `json:"failing"`
	// Capacity of the table (0: unbounded).
	Capacity      int       `json:"capacity,omitempty"`
	Pruned        bool      `json:"pruned"`
	Passes        uint64    `json:"passes"`
	LastError     string    `json:"lastError,omitempty"`
	LastErrorTime time.Time `json:"lastErrorTime,omitzero"`
}

// Reconciler applies desired state to a table.
type Reconciler[K comparable, V any] struct {
	cfg Config[K, V]

	// Owned by Run.
	applied map[K]V
	retry   map[K]*retryState
	// Incremental mode only: applied keys not desired (awaiting the prune
	// or a retry), and desired keys not applied (failing).
	unwanted, missing map[K]struct{}
	objs              *objects[K, V] // nil without TrackObjects

	mu     sync.Mutex // guards status
	status Status
}

type retryState struct {
	bo   backoff.Backoff
	next time.Time
}

// New returns a reconciler; nothing happens before Run.
func New[K comparable, V any](cfg Config[K, V]) *Reconciler[K, V] {
	if cfg.Equal == nil {
		cfg.Equal = func(a, b V) bool { return reflect.DeepEqual(a, b) }
	}
	if cfg.Resync <= 0 {
		cfg.Resync = time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.Retry.Clock = cfg.Clock
	r := &Reconciler[K, V]{cfg: cfg, retry: map[K]*retryState{}, unwanted: map[K]struct{}{}, missing: map[K]struct{}{},
		status: Status{Name: cfg.Name, Capacity: cfg.Capacity}}
	if cfg.TrackObjects {
		r.objs = newObjects[K, V]()
	}
	return r
}

// Status returns the reconciler's health.
func (r *Reconciler[K, V]) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Run reconciles until ctx ends.
func (r *Reconciler[K, V]) Run(ctx context.Context) error {
	held, err := r.cfg.Table.List(ctx)
	if err != nil {
		return fmt.Errorf("%s: list what the datapath holds: %w", r.cfg.Name, err)
	}
	r.applied = held
	for k, v := range held {
		r.setObject(k, v, true, nil)
	}
	if r.cfg.Incremental != nil {
		return r.runIncremental(ctx)
	}
	for {
		changed := r.cfg.Changed(ctx)
		wait := r.pass(ctx)
		t := r.cfg.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-changed:
		case <-t.C():
		}
		t.Stop()
	}
}

// pass runs one full reconciliation and returns how long to wait at most
// before the next one (the earliest retry, or the resync period).
func (r *Reconciler[K, V]) pass(ctx context.Context) time.Duration {
	return r.passWith(ctx, r.cfg.Desired(), r.cfg.Initialized())
}

// failed schedules the retry of k and returns its delay.
func (r *Reconciler[K, V]) failed(k K, now time.Time) time.Duration {
	rs, ok := r.retry[k]
	if !ok {
		rs = &retryState{bo: r.cfg.Retry}
		r.retry[k] = rs
	}
	d := rs.bo.Next()
	rs.next = now.Add(d)
	return d
}

// passState is one pass's clock reading, its earliest next wake-up and its
// last error.
type passState[K comparable, V any] struct {
	r       *Reconciler[K, V]
	now     time.Time
	wait    time.Duration
	lastErr error
}

func (r *Reconciler[K, V]) newPass() *passState[K, V] {
	return &passState[K, V]{r: r, now: r.cfg.Clock.Now(), wait: r.cfg.Resync}
}

// due reports whether k may be tried now (its retry, if any, is due); if
// not, the pass wakes up when it is.
func (p *passState[K, V]) due(k K) bool {
	if rs, ok := p.r.retry[k]; ok && p.now.Before(rs.next) {
		p.wait = min(p.wait, rs.next.Sub(p.now))
		return false
	}
	return true
}

// fail schedules k's retry and records err.
func (p *passState[K, V]) fail(k K, err error) {
	p.wait = min(p.wait, p.r.failed(k, p.now))
	p.r.setObject(k, *new(V), false, err)
	p.lastErr = err
}

// remove deletes k from the table; it reports whether it is gone (else
// its retry is scheduled).
func (r *Reconciler[K, V]) remove(ctx context.Context, ps *passState[K, V], k K) bool {
	if err := r.cfg.Table.Delete(ctx, k); err != nil {
		ps.fail(k, fmt.Errorf("delete %v: %w", k, err))
		return false
	}
	delete(r.applied, k)
	r.setObject(k, *new(V), false, nil)
	delete(r.retry, k)
	return true
}

// noteError records the last error of a pass.
func (r *Reconciler[K, V]) noteError(err error, now time.Time) {
	if err == nil {
		return
	}
	r.mu.Lock()
	r.status.LastError, r.status.LastErrorTime = err.Error(), now
	failing := len(r.retry)
	r.mu.Unlock()
	r.cfg.Log.Warn("datapath reconciliation failed, retrying", "reconciler", r.cfg.Name, "failing", failing, "error", err)
}

// passWith runs one full reconciliation towards desired; it prunes when
// initialized.
func (r *Reconciler[K, V]) passWith(ctx context.Context, desired map[K]V, initialized bool) time.Duration {
	ps := r.newPass()
	now, due, fail := ps.now, ps.due, ps.fail
	defer r.passEnded()
	for k, v := range desired {
		if a, ok := r.applied[k]; ok && r.cfg.Equal(a, v) {
			delete(r.retry, k)
			continue
		}
		if !due(k) {
			continue
		}
		if err := r.cfg.Table.Update(ctx, k, v); err != nil {
			fail(k, fmt.Errorf("update %v: %w", k, err))
			continue
		}
		r.applied[k] = v
		r.setObject(k, v, true, nil)
		delete(r.retry, k)
	}
	pruned := initialized
	if pruned {
		for k := range r.applied {
			if _, ok := desired[k]; ok || !due(k) {
				continue
			}
			r.remove(ctx, ps, k)
		}
	}
	for k := range r.retry { // forget retries of objects nobody wants any more
		if _, want := desired[k]; !want {
			if _, held := r.applied[k]; !held {
				delete(r.retry, k)
				r.setObject(k, *new(V), false, nil)
			}
		}
	}
	r.mu.Lock()
	r.status.Desired, r.status.Applied, r.status.Failing = len(desired), len(r.applied), len(r.retry)
	r.status.Pruned = pruned
	r.status.Passes++
	r.mu.Unlock()
	r.noteError(ps.lastErr, now)
	return ps.wait
}
