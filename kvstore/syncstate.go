package kvstore

import "time"

// entry is everything a SyncStore knows about one key. Values are strings
// because that is what etcd's client takes, so a write copies nothing;
// values are never empty, so "" means absent.
type entry struct {
	desired string // what the key should hold; "" = absent
	written string // what etcd holds, when inEtcd ("" = unknown value)
	inEtcd  bool
	// queued: to reconcile. A queued key is in the FIFO unless inflight;
	// done appends it when its write finishes.
	queued   bool
	inflight bool
	// pending: must be in etcd before the synced marker is (re)written.
	pending bool
}

// syncState is the SyncStore's table of keys and the transitions between
// desired, queued, in flight and written. All methods need SyncStore.mu.
type syncState struct {
	entries   map[string]*entry
	order     []string // FIFO of queued keys, from head
	head      int
	queuedN   int
	inflightN int
	pendingN  int
	signal    func()
}

func (st *syncState) get(key string) *entry {
	e := st.entries[key]
	if e == nil {
		e = &entry{}
		st.entries[key] = e
	}
	return e
}

// gc forgets a key that is absent everywhere and owes nothing.
func (st *syncState) gc(key string, e *entry) {
	if e.desired == "" && !e.inEtcd && !e.queued && !e.inflight && !e.pending {
		delete(st.entries, key)
	}
}

func (st *syncState) enqueue(key string, e *entry) {
	if e.queued {
		return
	}
	e.queued = true
	st.queuedN++
	if !e.inflight {
		st.order = append(st.order, key)
		st.signal()
	}
}

func (st *syncState) setPending(e *entry, on bool) {
	if e.pending != on {
		e.pending = on
		if on {
			st.pendingN++
		} else {
			st.pendingN--
		}
	}
}

// set makes key's desired value v ("" to delete) and queues it if that
// changes anything.
func (st *syncState) set(key, v string) {
	e := st.entries[key]
	if e == nil {
		if v == "" {
			return
		}
		e = st.get(key)
	}
	if e.desired == v {
		return
	}
	e.desired = v
	st.enqueue(key, e)
}

// markAllPending makes every key not yet written as desired pending.
func (st *syncState) markAllPending() {
	for _, e := range st.entries {
		if e.queued || e.inflight {
			st.setPending(e, true)
		}
	}
}

// markStale records the keys found in etcd (written by an earlier
// instance) as there, and queues the deletion of those nobody wants. A
// wanted one stays queued for its write; should it be deleted before that
// write, the delete must still reach etcd (the earlier instance's value
// would otherwise stay until its lease expires).
func (st *syncState) markStale(existing map[string]struct{}) {
	for k := range existing {
		e := st.get(k)
		e.inEtcd, e.written = true, ""
		if e.desired == "" {
			st.setPending(e, true)
			st.enqueue(k, e)
		}
	}
}

// lost records that keys vanished with their lease: the wanted ones are
// queued (and pending) again.
func (st *syncState) lost(keys []string) {
	for _, k := range keys {
		e := st.entries[k]
		if e == nil {
			continue
		}
		e.inEtcd, e.written = false, ""
		if e.desired != "" {
			st.setPending(e, true)
			st.enqueue(k, e)
		}
		st.gc(k, e)
	}
}

// take pops up to n keys (at most maxBytes of values, at least one key)
// that need a write, and marks them in flight.
func (st *syncState) take(n, maxBytes int) []op {
	var batch []op
	size := 0
	for st.head < len(st.order) && len(batch) < n {
		k := st.order[st.head]
		e := st.entries[k]
		if e == nil || !e.queued || e.inflight {
			st.head++ // a stale FIFO entry
			continue
		}
		if len(batch) > 0 && size+len(e.desired) > maxBytes {
			break
		}
		st.head++
		e.queued = false
		st.queuedN--
		if e.desired == "" && !e.inEtcd || e.desired != "" && e.inEtcd && e.desired == e.written {
			st.setPending(e, false) // nothing to write
			st.gc(k, e)
			continue
		}
		e.inflight = true
		st.inflightN++
		size += len(e.desired)
		batch = append(batch, op{key: k, value: e.desired, delete: e.desired == ""})
	}
	if st.head == len(st.order) || st.head > 4096 && st.head > len(st.order)/2 {
		st.order = append(st.order[:0], st.order[st.head:]...)
		st.head = 0
	}
	if st.head < len(st.order) {
		st.signal() // more for another worker
	}
	return batch
}

// done records a batch's outcome: written keys stop being pending unless
// they changed meanwhile; failed ones are queued again. detach is called for
// each key deleted from etcd.
func (st *syncState) done(batch []op, ok bool, detach func(string)) {
	for _, o := range batch {
		e := st.entries[o.key]
		e.inflight = false
		st.inflightN--
		switch {
		case !ok:
			if !e.queued {
				e.queued = true
				st.queuedN++
			}
		case o.delete:
			e.inEtcd, e.written = false, ""
			detach(o.key)
		default:
			e.inEtcd, e.written = true, o.value
		}
		if e.queued {
			st.order = append(st.order, o.key)
			st.signal()
		} else {
			st.setPending(e, false)
		}
		st.gc(o.key, e)
	}
}

// markerValue is the synced marker's value: the time it is written.
func markerValue(now time.Time) string { return now.UTC().Format(time.RFC3339) }
