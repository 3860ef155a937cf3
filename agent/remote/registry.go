package remote

import (
	"fmt"
	"sync"

	"github.com/clustermesh/clustermesh/identity"
)

// Registry makes sure no two peers (and not the local cluster) use one
// cluster ID.
//
// Rules: a peer whose config pins an ID (Pin: `clustermesh connect`
// recorded it) owns that ID. No other peer may hold it, whatever the order
// in which they arrive: a claim of a pinned ID by another peer is refused
// (squatting), and a peer holding an ID without a pin loses it when the
// pinned owner appears (its claim's lost channel is closed, and it must
// drain). Between peers of which none or both pin an ID, the first claim
// wins. The local cluster's ID is never given to a peer.
type Registry struct {
	local     identity.ClusterID
	localName string

	mu   sync.Mutex // guards byID, pins
	byID map[identity.ClusterID]*Hold
	pins map[string]identity.ClusterID // peer → the ID its config pins
}

// Hold is a peer's hold on a cluster ID.
type Hold struct {
	peer string
	lost chan struct{} // closed when a pinned owner took the ID back
	by   string        // that owner; written before lost is closed
}

// Lost is closed when a peer whose config pins the ID took it back: the
// holder must stop using the ID and drain what it accepted under it.
func (h *Hold) Lost() <-chan struct{} { return h.lost }

// TakenBy names the peer that took the ID back, once Lost is closed.
func (h *Hold) TakenBy() string {
	select {
	case <-h.lost:
		return h.by
	default:
		return ""
	}
}

// NewRegistry returns a registry holding the local cluster's ID.
func NewRegistry(localName string, local identity.ClusterID) *Registry {
	return &Registry{local: local, localName: localName, byID: map[identity.ClusterID]*Hold{},
		pins: map[string]identity.ClusterID{}}
}

// Pin records that peer's config pins id, taking id back from a peer that
// holds it without that pin. A zero id pins nothing.
func (r *Registry) Pin(peer string, id identity.ClusterID) {
	if id == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pins[peer] = id
	if cur, ok := r.byID[id]; ok && cur.peer != peer && r.pins[cur.peer] != id {
		r.evictLocked(id, cur, peer)
	}
}

// Unpin forgets peer's pin (its config is gone or changed).
func (r *Registry) Unpin(peer string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pins, peer)
}

// Claim gives id to peer, or says who has it. A peer that pins id may take
// it back later (see Hold.Lost).
func (r *Registry) Claim(peer string, id identity.ClusterID) (*Hold, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id == r.local {
		return nil, fmt.Errorf("cluster ID %d of peer %s is the local cluster's (%s): give each cluster its own ID", id, peer, r.localName)
	}
	pinned := r.pins[peer] == id
	if !pinned {
		for owner, pid := range r.pins {
			if pid == id && owner != peer {
				return nil, fmt.Errorf("%w: cluster ID %d announced by peer %s is the one `clustermesh connect` recorded for peer %s: "+
					"nothing of %s is accepted under it; give %s its own ID, or if %s really has that ID now, run `clustermesh connect` for it again",
					ErrClusterIDPinned, id, peer, owner, peer, peer, peer)
			}
		}
	}
	if cur, ok := r.byID[id]; ok && cur.peer != peer {
		if !pinned || r.pins[cur.peer] == id { // first come, first served
			return nil, fmt.Errorf("cluster ID %d of peer %s is already used by peer %s: give each cluster its own ID", id, peer, cur.peer)
		}
		r.evictLocked(id, cur, peer) // the pinned owner takes its ID back
	}
	if cur, ok := r.byID[id]; ok {
		return cur, nil
	}
	h := &Hold{peer: peer, lost: make(chan struct{})}
	r.byID[id] = h
	return h, nil
}

func (r *Registry) evictLocked(id identity.ClusterID, h *Hold, by string) {
	delete(r.byID, id)
	h.by = by
	close(h.lost)
}

// Release frees every ID held by peer.
func (r *Registry) Release(peer string) {
	r.Retain(peer, 0)
}

// Retain frees every ID held by peer but keep.
func (r *Registry) Retain(peer string, keep identity.ClusterID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, h := range r.byID {
		if h.peer == peer && id != keep {
			delete(r.byID, id)
		}
	}
}
