package desired

import (
	"net/netip"
	"strings"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Peers is the routing peer set: every node of every cluster but this
// one, with an address to reach it.
func Peers(sn *state.Snapshot, cluster, node string) map[string]datapath.Peer {
	out := map[string]datapath.Peer{}
	for _, n := range sn.Nodes("") {
		if p, ok := peerOf(n, cluster, node); ok {
			out[peerKey(n.Cluster, n.Name)] = p
		}
	}
	return out
}

func peerKey(cluster, node string) string { return cluster + "/" + node }

// peerOf returns the routing peer of node n, if it is one: not this node,
// and with an address to send its traffic to: its first InternalIP, IPv4
// before IPv6, else its first ExternalIP, IPv4 before IPv6. Its pod CIDRs
// are those of both families.
func peerOf(n state.NodeRow, cluster, node string) (datapath.Peer, bool) {
	if n.Cluster == cluster && n.Name == node {
		return datapath.Peer{}, false
	}
	var ip netip.Addr
	for _, typ := range []string{schema.AddressInternalIP, schema.AddressExternalIP} {
		for _, ipv6 := range []bool{false, true} {
			if !ip.IsValid() {
				ip = n.Node.Address(typ, ipv6)
			}
		}
	}
	if !ip.IsValid() {
		return datapath.Peer{}, false
	}
	return datapath.Peer{
		Cluster: n.Cluster, Node: n.Name, NodeIP: ip,
		PodCIDRs: n.Node.PodCIDRs(), WireguardPubKey: n.Node.WireguardPubKey,
	}, true
}

// PeerAt is Peers' value for the key cluster/node.
func PeerAt(sn *state.Snapshot, cluster, node, key string) (datapath.Peer, bool) {
	c, name, ok := strings.Cut(key, "/")
	if !ok {
		return datapath.Peer{}, false
	}
	n, ok := sn.Node(c, name)
	if !ok {
		return datapath.Peer{}, false
	}
	return peerOf(n, cluster, node)
}

// NewPeersSource returns the routing peers' incremental source (see
// Source): a node's change touches its own peer only.
func NewPeersSource(st *state.State, cluster, node string) *Source[string, datapath.Peer] {
	return NewSource(st, peersJoin{cluster: cluster, node: node}, state.TableNodes)
}

// peersJoin is Peers and PeerAt as a Join.
type peersJoin struct{ cluster, node string }

func (j peersJoin) All(sn *state.Snapshot) map[string]datapath.Peer {
	return Peers(sn, j.cluster, j.node)
}

func (j peersJoin) At(sn *state.Snapshot, k string) (datapath.Peer, bool) {
	return PeerAt(sn, j.cluster, j.node, k)
}

func (peersJoin) Keys(_ *state.Snapshot, c state.Change, keys map[string]struct{}) {
	for _, raw := range []any{c.Before, c.After} {
		if n, ok := raw.(*state.NodeRow); ok {
			keys[peerKey(n.Cluster, n.Name)] = struct{}{}
		}
	}
}
