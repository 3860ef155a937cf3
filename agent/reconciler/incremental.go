package reconciler

import (
	"context"
	"fmt"
	"time"
)

// Incremental is a source of desired state that says which keys changed,
// so that a change costs the reconciler work proportional to the change:
// it reads only those keys (View.At), and the whole desired state (View.All)
// only on a full pass (the first, after lost changes, when the sources
// become initialized, and every Resync as a safety net).
type Incremental[K comparable, V any] interface {
	// Changed receives when Next has something to report.
	Changed() <-chan struct{}
	// Next returns the keys whose desired value may have changed since the
	// last call (a key may come more than once, or unchanged) and a view
	// that includes those changes. full asks for a full pass.
	Next() (view View[K, V], keys []K, full bool)
}

// View is one consistent desired state.
type View[K comparable, V any] interface {
	// At returns the desired value of k, if any.
	At(k K) (V, bool)
	// All returns the whole desired state.
	All() map[K]V
}

// runIncremental is Run for a Config with Incremental.
func (r *Reconciler[K, V]) runIncremental(ctx context.Context) error {
	src := r.cfg.Incremental
	nextFull := r.cfg.Clock.Now() // the first pass is full
	wasInitialized := false
	for {
		view, keys, full := src.Next()
		now := r.cfg.Clock.Now()
		initialized := r.cfg.Initialized()
		var wait time.Duration
		// A full pass when the sources become initialized (again: a new
		// source may have been added meanwhile) prunes what was kept
		// while they were not.
		if full || !now.Before(nextFull) || (initialized && !wasInitialized) {
			wait = r.fullPass(ctx, view.All(), initialized)
			nextFull = now.Add(r.cfg.Resync)
		} else {
			wait = r.keysPass(ctx, view, keys, initialized)
		}
		wasInitialized = initialized
		wait = min(wait, nextFull.Sub(now))
		t := r.cfg.Clock.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-src.Changed():
		case <-t.C():
		}
		t.Stop()
	}
}

// fullPass is pass with a given desired state; it also rebuilds the sets
// an incremental pass keeps.
func (r *Reconciler[K, V]) fullPass(ctx context.Context, desired map[K]V, initialized bool) time.Duration {
	wait := r.passWith(ctx, desired, initialized)
	clear(r.unwanted)
	clear(r.missing)
	for k := range r.applied {
		if _, ok := desired[k]; !ok {
			r.unwanted[k] = struct{}{}
		}
	}
	for k := range desired {
		if _, ok := r.applied[k]; !ok {
			r.missing[k] = struct{}{}
		}
	}
	r.setCounts()
	return wait
}

// keysPass reconciles the given keys and the failed ones whose retry is
// due, reading each key's desired value from view.
func (r *Reconciler[K, V]) keysPass(ctx context.Context, view View[K, V], keys []K, initialized bool) time.Duration {
	ps := r.newPass()
	now, due, fail := ps.now, ps.due, ps.fail
	for k, rs := range r.retry {
		if !now.Before(rs.next) {
			keys = append(keys, k)
		}
	}
	defer r.passEnded()
	for _, k := range keys {
		v, want := view.At(k)
		a, held := r.applied[k]
		switch {
		case want:
			delete(r.unwanted, k)
			if held && r.cfg.Equal(a, v) {
				delete(r.retry, k)
				delete(r.missing, k)
				continue
			}
			if !due(k) {
				continue
			}
			if err := r.cfg.Table.Update(ctx, k, v); err != nil {
				if !held {
					r.missing[k] = struct{}{}
				}
				fail(k, fmt.Errorf("update %v: %w", k, err))
				continue
			}
			r.applied[k] = v
			r.setObject(k, v, true, nil)
			delete(r.retry, k)
			delete(r.missing, k)
		case !held:
			delete(r.missing, k)
			if _, failing := r.retry[k]; failing {
				delete(r.retry, k)
				r.setObject(k, *new(V), false, nil)
			}
		default:
			r.unwanted[k] = struct{}{}
			if !initialized || !due(k) {
				continue
			}
			if r.remove(ctx, ps, k) {
				delete(r.unwanted, k)
			}
		}
	}
	for _, rs := range r.retry { // the next retry, whether or not its key came up
		ps.wait = min(ps.wait, max(rs.next.Sub(now), time.Millisecond))
	}
	r.mu.Lock()
	r.status.Passes++
	r.mu.Unlock()
	r.setCounts()
	r.noteError(ps.lastErr, now)
	return ps.wait
}

// setCounts sets the status counts from the applied, unwanted and missing
// sets: desired = applied - unwanted + missing.
func (r *Reconciler[K, V]) setCounts() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status.Desired = len(r.applied) - len(r.unwanted) + len(r.missing)
	r.status.Applied, r.status.Failing = len(r.applied), len(r.retry)
}
