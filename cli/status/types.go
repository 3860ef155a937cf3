package status

import (
	"time"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// AgentStatus is the part of an agent's GET /v1/status answer the CLI
// reads (docs/agent-api.md is the contract).
type AgentStatus struct {
	Cluster string       `json:"cluster"`
	Node    string       `json:"node"`
	Version AgentVersion `json:"version"`
	Peers   []PeerStatus `json:"peers"`
}

// AgentVersion is the build of an agent.
type AgentVersion struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
}

// PeerStatus is one peer as one agent sees it.
type PeerStatus struct {
	Name            string            `json:"name"`
	Connected       bool              `json:"connected"`
	Ready           bool              `json:"ready"`
	ClusterID       uint32            `json:"clusterID,omitempty"`
	Synced          map[string]bool   `json:"synced"`
	Entries         map[string]int    `json:"entries"`
	Rejected        map[string]uint64 `json:"rejected,omitempty"`
	Failures        uint64            `json:"failures"`
	Revoked         bool              `json:"revoked,omitempty"`
	LastFailure     string            `json:"lastFailure,omitempty"`
	LastFailureTime time.Time         `json:"lastFailureTime,omitzero"`
	// ThroughCache: the agent reads the peer from the local
	// clustermesh-apiserver's cache of remote state, not from the peer.
	ThroughCache bool `json:"throughCache,omitempty"`
}

// NodeStatus is what one agent answered, or why it could not be asked.
type NodeStatus struct {
	Node   string
	Status *AgentStatus
	Err    error
}

// Kinds are the exported prefixes, in display order.
var Kinds = []string{"nodes", "identities", "ip", "services"}

// Report is the status of one cluster's mesh. Its JSON form is stable:
// lists are sorted, nothing depends on the time of the call.
type Report struct {
	Cluster   string    `json:"cluster"`
	ClusterID uint32    `json:"clusterID"`
	APIServer APIServer `json:"apiserver"`
	// Configured are the peers of the mesh Secret.
	Configured []string `json:"configuredPeers"`
	// Nodes is the number of agents asked; Answered how many answered.
	Nodes    int `json:"nodes"`
	Answered int `json:"answered"`
	// ConnectedPeers is, over the nodes that answered, how many peers each
	// node is connected to.
	ConnectedPeers MinAvgMax `json:"connectedPeers"`
	Peers          []Peer    `json:"peers"`
	// Versions are the agents' versions, with their nodes.
	Versions []VersionCount `json:"versions"`
	Errors   []Problem      `json:"errors,omitempty"`
	// Warnings do not make the mesh incomplete (Complete) but need a
	// look: versions too far apart.
	Warnings []Problem `json:"warnings,omitempty"`
}

// APIServer is the local clustermesh-apiserver: its Deployment and what
// its etcd holds.
type APIServer struct {
	Ready         bool  `json:"ready"`
	Replicas      int32 `json:"replicas"`
	ReadyReplicas int32 `json:"readyReplicas"`
	// EtcdReachable: the CLI logged into the etcd as admin at the
	// ConfigMap's endpoints.
	EtcdReachable bool `json:"etcdReachable"`
	// ClusterConfig: the cluster config key exists with our ID.
	ClusterConfig bool `json:"clusterConfig"`
	// Exported says per kind whether its synced marker is written.
	Exported map[string]bool `json:"exported"`
	// Cache lists the peers the clustermesh-apiserver's cache of remote
	// state publishes in its etcd (a cluster config with the "cached"
	// capability), sorted by name; empty when the cache is off.
	Cache []CachedPeer `json:"cache,omitempty"`
}

// CachedPeer is one peer in the cache of remote state, as the local etcd
// holds it (what the agents reading through the cache get).
type CachedPeer struct {
	Name      string `json:"name"`
	ClusterID uint32 `json:"clusterID"`
	// Synced says per kind whether the cache wrote its synced marker.
	Synced map[string]bool `json:"synced"`
	// Entries counts the cached keys per kind.
	Entries map[string]int64 `json:"entries"`
	// Connection is the cache's connection to the peer, as the
	// clustermesh-apiserver publishes it (nil: not published, e.g. by an
	// older clustermesh-apiserver).
	Connection *schema.CachePeerState `json:"connection,omitempty"`
}

// Complete reports whether every kind of the peer is synced in the cache.
func (c CachedPeer) Complete() bool {
	for _, k := range Kinds {
		if !c.Synced[k] {
			return false
		}
	}
	return true
}

// MinAvgMax summarizes a count over nodes.
type MinAvgMax struct {
	Min int     `json:"min"`
	Avg float64 `json:"avg"`
	Max int     `json:"max"`
}

// Peer is one peer cluster over all nodes.
type Peer struct {
	Name string `json:"name"`
	// Configured: the mesh Secret has it. A peer that agents report but the
	// Secret does not have is being disconnected.
	Configured bool   `json:"configured"`
	ClusterID  uint32 `json:"clusterID,omitempty"`
	// Connected and Ready count nodes.
	Connected int `json:"connected"`
	Ready     int `json:"ready"`
	// Synced counts, per kind, the nodes that synced it.
	Synced map[string]int `json:"synced"`
	// Rejected counts entries refused by validation, summed over nodes.
	Rejected uint64 `json:"rejected"`
	// ThroughCache counts the nodes that read the peer from the local
	// cache of remote state rather than from the peer's etcd.
	ThroughCache int `json:"throughCache"`
}

// Problem is an error with where it is and what to do.
type Problem struct {
	Node    string `json:"node,omitempty"`
	Peer    string `json:"peer,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}
