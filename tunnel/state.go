package tunnel

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"

	"github.com/clustermesh/clustermesh/agent/datapath"
)

// stateVersion is the format of the state file.
const stateVersion = 1

// stateFile is what WireGuard cannot hold: the datapath key and the peer
// value as the reconciler wrote it (names, pod CIDR order, nil or empty).
// It is written before the device, so every peer the device holds has its
// record, except after a crash between the two writes of a Delete (then
// List reports a record without a device peer as absent).
type stateFile struct {
	path  string
	peers map[string]datapath.Peer
}

type stateJSON struct {
	Version int                   `json:"version"`
	Peers   map[string]peerRecord `json:"peers"`
}

type peerRecord struct {
	Cluster   string         `json:"cluster"`
	Node      string         `json:"node"`
	NodeIP    netip.Addr     `json:"nodeIP"`
	PodCIDRs  []netip.Prefix `json:"podCIDRs"` // null and [] told apart
	PublicKey string         `json:"publicKey"`
}

// loadState reads path; an absent file is an empty state.
func loadState(path string) (*stateFile, error) {
	s := &stateFile{path: path, peers: map[string]datapath.Peer{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state file: %w", err)
	}
	var j stateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("parse state file %s: %w (remove it: the agent then re-adds every peer)", path, err)
	}
	if j.Version != stateVersion {
		return nil, fmt.Errorf("state file %s: version %d, want %d", path, j.Version, stateVersion)
	}
	for k, r := range j.Peers {
		s.peers[k] = datapath.Peer{Cluster: r.Cluster, Node: r.Node, NodeIP: r.NodeIP, PodCIDRs: r.PodCIDRs, WireguardPubKey: r.PublicKey}
	}
	return s, nil
}

// save writes the state atomically.
func (s *stateFile) save() error {
	j := stateJSON{Version: stateVersion, Peers: make(map[string]peerRecord, len(s.peers))}
	for k, p := range s.peers {
		j.Peers[k] = peerRecord{Cluster: p.Cluster, Node: p.Node, NodeIP: p.NodeIP, PodCIDRs: p.PodCIDRs, PublicKey: p.WireguardPubKey}
	}
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := writeFileAtomic(s.path, b); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	return nil
}

// clonePeer returns p with its own PodCIDRs (nil stays nil).
func clonePeer(p datapath.Peer) datapath.Peer {
	p.PodCIDRs = slices.Clone(p.PodCIDRs)
	return p
}
