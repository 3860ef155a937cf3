package desired

import (
	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Peers is the routing peer set: every node of every cluster but this
// one, with an address to reach it.
func Peers(sn *state.Snapshot, cluster, node string) map[string]datapath.Peer {
	out := map[string]datapath.Peer{}
	for _, n := range sn.Nodes("") {
		if n.Cluster == cluster && n.Name == node {
			continue
		}
		ip := n.Node.InternalIP(false)
		if !ip.IsValid() {
			ip = n.Node.InternalIP(true)
		}
		if !ip.IsValid() {
			ip = n.Node.Address(schema.AddressExternalIP, false)
		}
		if !ip.IsValid() {
			continue // nowhere to send its traffic
		}
		out[n.Cluster+"/"+n.Name] = datapath.Peer{
			Cluster: n.Cluster, Node: n.Name, NodeIP: ip,
			PodCIDRs: n.Node.PodCIDRs(), WireguardPubKey: n.Node.WireguardPubKey,
		}
	}
	return out
}
