package remote

import (
	"fmt"
	"sync"

	"github.com/clustermesh/clustermesh/identity"
)

// Registry makes sure no two peers (and not the local cluster) use one
// cluster ID.
type Registry struct {
	local identity.ClusterID
	mu    sync.Mutex // guards byID
	byID  map[identity.ClusterID]string
}

// NewRegistry returns a registry holding the local cluster's ID.
func NewRegistry(localName string, local identity.ClusterID) *Registry {
	return &Registry{local: local, byID: map[identity.ClusterID]string{local: localName}}
}

// Claim gives id to peer, or says who has it.
func (r *Registry) Claim(peer string, id identity.ClusterID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if owner, ok := r.byID[id]; ok && owner != peer {
		if id == r.local {
			return fmt.Errorf("cluster ID %d of peer %s is the local cluster's (%s): give each cluster its own ID", id, peer, owner)
		}
		return fmt.Errorf("cluster ID %d of peer %s is already used by peer %s: give each cluster its own ID", id, peer, owner)
	}
	r.byID[id] = peer
	return nil
}

// Release frees every ID held by peer.
func (r *Registry) Release(peer string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, owner := range r.byID {
		if owner == peer && id != r.local {
			delete(r.byID, id)
		}
	}
}
