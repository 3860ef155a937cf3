package drops

import (
	"net/netip"
	"sync"
	"time"
)

// DefaultCapacity is the number of records a Ring holds when none is given.
const DefaultCapacity = 4096

// Record is one dropped packet.
type Record struct {
	// Time is when the kernel dropped the packet.
	Time time.Time `json:"time"`
	// Direction is "ingress" (towards the endpoint) or "egress" (from it).
	Direction string `json:"direction"`
	// Reason is the datapath's reason (bpf.Reason), e.g. "policy-denied".
	Reason string         `json:"reason"`
	Src    netip.AddrPort `json:"src"`
	Dst    netip.AddrPort `json:"dst"`
	// Protocol is the IP protocol number (6 TCP, 17 UDP, 1 ICMP).
	Protocol uint8 `json:"protocol"`
	// SrcIdentity and DstIdentity are the security identities of the
	// packet's source and destination.
	SrcIdentity uint32 `json:"srcIdentity"`
	DstIdentity uint32 `json:"dstIdentity"`
	// SrcCluster and DstCluster are the clusters of the identities, when
	// the agent knew them at the time of the drop.
	SrcCluster string `json:"srcCluster,omitempty"`
	DstCluster string `json:"dstCluster,omitempty"`
	// EndpointID is the datapath ID of the endpoint whose policy dropped
	// the packet.
	EndpointID uint16 `json:"endpointID"`
}

// Query selects records of a Ring.
type Query struct {
	// Since, when set, keeps records whose Time is after it.
	Since time.Time
	// Limit, when positive, keeps only the newest Limit of the records
	// Since selected.
	Limit int
}

// Ring holds the most recent records, in the order they were added. It is
// safe for concurrent use.
type Ring struct {
	mu          sync.Mutex // guards the fields below
	buf         []Record   // len(buf) is the capacity
	start, n    int        // the oldest record is buf[start]; n are held
	overwritten uint64     // records dropped to make room
}

// NewRing returns an empty ring of capacity records (DefaultCapacity if
// capacity is not positive).
func NewRing(capacity int) *Ring {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Ring{buf: make([]Record, capacity)}
}

// Cap returns the capacity.
func (r *Ring) Cap() int { return len(r.buf) }

// Add appends rec, overwriting the oldest record when the ring is full.
func (r *Ring) Add(rec Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = rec
		r.n++
		return
	}
	r.buf[r.start] = rec
	r.start = (r.start + 1) % len(r.buf)
	r.overwritten++
}

// List returns the records q selects, oldest first (the order they were
// added), and the number of records overwritten since the ring was made.
func (r *Ring) List(q Query) ([]Record, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Record, 0, r.n)
	for i := range r.n {
		rec := r.buf[(r.start+i)%len(r.buf)]
		if q.Since.IsZero() || rec.Time.After(q.Since) {
			out = append(out, rec)
		}
	}
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[len(out)-q.Limit:]
	}
	return out, r.overwritten
}
