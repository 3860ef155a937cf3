package schema

import (
	"encoding/json"
	"fmt"
	"time"
)

// CachePeerState is the cache of remote state's connection to one peer, as
// the clustermesh-apiserver publishes it at Paths.CacheStatus for
// `clustermesh status`: the agents reading through the cache stay
// connected to the local etcd while the cache may have lost the peer.
type CachePeerState struct {
	// Connected: the cache's connection to the peer's etcd works, and the
	// peer answered its last liveness probe.
	Connected bool `json:"connected"`
	// Ready: every kind of the peer was synced (its state is complete).
	Ready bool `json:"ready"`
	// Revoked: the peer's state was drained after its heartbeat stopped
	// for longer than the cache TTL.
	Revoked bool `json:"revoked,omitempty"`
	// Failures counts the connection's failures since the cache started.
	Failures        uint64    `json:"failures"`
	LastFailure     string    `json:"lastFailure,omitempty"`
	LastFailureTime time.Time `json:"lastFailureTime,omitzero"`
}

// Marshal encodes the state as JSON.
func (s CachePeerState) Marshal() ([]byte, error) { return json.Marshal(s) }

// DecodeCachePeerState decodes the value of key (a CacheStatus key).
func DecodeCachePeerState(key string, value []byte) (CachePeerState, error) {
	var s CachePeerState
	if err := json.Unmarshal(value, &s); err != nil {
		return CachePeerState{}, fmt.Errorf("%s: the cache's connection state is not valid JSON: %w", key, err)
	}
	return s, nil
}
