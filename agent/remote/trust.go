package remote

import (
	"net/netip"

	"github.com/clustermesh/clustermesh/identity"
)

// Trust is what the agent knows of a peer independently of what the peer
// says: recorded by `clustermesh connect` in the peer's mesh configuration
// file. A peer's claims are checked against it, not only against what the
// same peer said elsewhere.
type Trust struct {
	// ClusterID the peer must announce; zero when the mesh configuration
	// predates pinning (the first ID seen is then kept, as before).
	ClusterID identity.ClusterID
	// PodCIDRs are the peer's pod CIDRs (its ConfigMap's pod-cidrs at
	// connect time): every pod CIDR of its nodes must lie inside one. Nil
	// when not recorded: then only the checks against the rest of the mesh
	// (Claims) and against special ranges apply.
	PodCIDRs []netip.Prefix
}

// Claims tells what the rest of the mesh (the local cluster and the other
// peers) holds, so that a peer cannot claim it. Implementations are safe
// for concurrent use; a nil Claims checks nothing.
type Claims interface {
	// PodCIDROwner returns a cluster other than peer whose pod CIDRs
	// overlap p.
	PodCIDROwner(peer string, p netip.Prefix) (owner string, found bool)
	// NodeIPOwner returns a cluster other than peer that has a node with
	// address ip.
	NodeIPOwner(peer string, ip netip.Addr) (owner string, found bool)
}
