package reconciler

import "sync"

// Per-object status, for tables whose consumers wait for one object (the
// CNI ADD waits for its pod's policy and attachment): opt in with
// Config.TrackObjects. Object reports what the table holds for a key and
// the last error of the key's pending operation; Watch returns a channel
// closed after the next pass, to wait without polling.

// ObjectStatus is the reconcile status of one key.
type ObjectStatus[V any] struct {
	// Applied is what the table holds for the key (valid when Held).
	Applied V
	Held    bool
	// Err is the error of the key's last operation, while it is retried.
	Err string
}

// objects is the per-key status and the pass broadcast.
type objects[K comparable, V any] struct {
	mu     sync.Mutex
	byKey  map[K]ObjectStatus[V]
	passed chan struct{} // closed after a pass, then replaced
}

func newObjects[K comparable, V any]() *objects[K, V] {
	return &objects[K, V]{byKey: map[K]ObjectStatus[V]{}, passed: make(chan struct{})}
}

// Object returns the status of key k. Without Config.TrackObjects it
// reports nothing held.
func (r *Reconciler[K, V]) Object(k K) ObjectStatus[V] {
	if r.objs == nil {
		return ObjectStatus[V]{}
	}
	r.objs.mu.Lock()
	defer r.objs.mu.Unlock()
	return r.objs.byKey[k]
}

// Watch returns a channel closed when the next pass ends.
func (r *Reconciler[K, V]) Watch() <-chan struct{} {
	if r.objs == nil {
		return nil
	}
	r.objs.mu.Lock()
	defer r.objs.mu.Unlock()
	return r.objs.passed
}

// setObject records key k's status; called by Run's goroutine.
func (r *Reconciler[K, V]) setObject(k K, v V, held bool, err error) {
	if r.objs == nil {
		return
	}
	r.objs.mu.Lock()
	defer r.objs.mu.Unlock()
	switch {
	case err != nil:
		st := r.objs.byKey[k]
		st.Err = err.Error()
		r.objs.byKey[k] = st
	case held:
		r.objs.byKey[k] = ObjectStatus[V]{Applied: v, Held: true}
	default:
		delete(r.objs.byKey, k)
	}
}

// passEnded wakes the watchers of the pass.
func (r *Reconciler[K, V]) passEnded() {
	if r.objs == nil {
		return
	}
	r.objs.mu.Lock()
	defer r.objs.mu.Unlock()
	close(r.objs.passed)
	r.objs.passed = make(chan struct{})
}
