package flows

import (
	"sync"
	"time"

	"github.com/clustermesh/clustermesh/agent/flowapi"
)

// DefaultCapacity is the number of flows a Ring holds when none is given.
const DefaultCapacity = 8192

// Ring holds the most recent flows in the order they were added, each
// with a sequence number (1, 2, ...). It is safe for concurrent use.
type Ring struct {
	mu          sync.Mutex     // guards the fields below
	buf         []flowapi.Flow // len(buf) is the capacity
	start, n    int            // the oldest flow is buf[start]; n are held
	next        uint64         // sequence number of the next flow added
	overwritten uint64         // flows dropped to make room
	notify      chan struct{}  // closed by the next Add once waited is set
	waited      bool
}

// NewRing returns an empty ring of capacity flows (DefaultCapacity if
// capacity is not positive).
func NewRing(capacity int) *Ring {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Ring{buf: make([]flowapi.Flow, capacity), next: 1, notify: make(chan struct{})}
}

// Cap returns the capacity.
func (r *Ring) Cap() int { return len(r.buf) }

// Add appends f, overwriting the oldest flow when the ring is full, and
// wakes the readers waiting (Wait).
func (r *Ring) Add(f *flowapi.Flow) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = *f
		r.n++
	} else {
		r.buf[r.start] = *f
		r.start = (r.start + 1) % len(r.buf)
		r.overwritten++
	}
	r.next++
	if r.waited { // a new channel only when someone waits on the old one
		close(r.notify)
		r.notify, r.waited = make(chan struct{}), false
	}
}

// Wait returns a channel closed by the next Add.
func (r *Ring) Wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waited = true
	return r.notify
}

// RingStats are a Ring's counts.
type RingStats struct {
	Capacity, Held int
	// Added counts every flow added, Overwritten those pushed out.
	Added, Overwritten uint64
}

// Stats returns the ring's counts.
func (r *Ring) Stats() RingStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RingStats{Capacity: len(r.buf), Held: r.n, Added: r.next - 1, Overwritten: r.overwritten}
}

// Last returns the newest last flows (all when last is not positive) after
// since (when set) that match selects (all when nil), oldest first, and
// the sequence number of the next flow to be added: where a reader that
// follows goes on.
func (r *Ring) Last(last int, since time.Time, match func(*flowapi.Flow) bool) ([]flowapi.Flow, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []flowapi.Flow
	// From the newest back, so that last bounds the work.
	for i := r.n - 1; i >= 0 && (last <= 0 || len(out) < last); i-- {
		f := &r.buf[(r.start+i)%len(r.buf)]
		if (since.IsZero() || f.Time.After(since)) && (match == nil || match(f)) {
			out = append(out, *f)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, r.next
}

// Next returns the sequence number of the next flow to be added.
func (r *Ring) Next() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next
}

// maxScan bounds how many flows one Read looks at, and so how long it
// holds the lock.
const maxScan = 1024

// Read appends to out the flows from sequence number from on that match
// selects (all when nil), looking at most at maxScan flows, and returns
// them, the sequence number to read from next, and how many flows from
// on the ring overwrote before they could be read.
func (r *Ring) Read(from uint64, match func(*flowapi.Flow) bool, out []flowapi.Flow) ([]flowapi.Flow, uint64, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var missed uint64
	oldest := r.next - uint64(r.n)
	if from < oldest {
		missed, from = oldest-from, oldest
	}
	for scanned := 0; from < r.next && scanned < maxScan; from, scanned = from+1, scanned+1 {
		f := &r.buf[(r.start+int(from-oldest))%len(r.buf)]
		if match == nil || match(f) {
			out = append(out, *f)
		}
	}
	return out, from, missed
}
