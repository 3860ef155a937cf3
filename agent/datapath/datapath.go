// Package datapath is what the agent tells the kernel, as an interface with
// an in-memory implementation (used by tests and by --datapath=none) that
// records exactly what the kernel would be told. The eBPF and WireGuard
// implementations satisfy the same interface.
//
// Rules: only reconcilers call a Datapath; every operation is idempotent
// (an Update of an equal value and a Delete of an absent key succeed); an
// Update of a key the kernel already holds changes it in place: at no
// moment is the key absent, nor stricter than both the old and the new
// value. List returns the keys the kernel holds, with the values as far as
// the kernel records them: an implementation may keep less than a value
// carries (the eBPF datapath keeps no cluster or service names, and policy
// rules only as expanded into entries), but what it lists never equals a
// desired value the kernel does not enforce. So a restarted agent
// reconciles against pinned state without removing live entries first: a
// value List gives back only in part differs from the desired one, and the
// reconciler's first pass rewrites it, with equal kernel content.
package datapath

import (
	"context"
	"net/netip"

	"github.com/clustermesh/clustermesh/identity"
)

// IPCacheEntry is what the datapath holds for a prefix of its ipcache: the
// identity of the endpoints in it, their node and cluster. The agent
// computes it from state.IPCacheRow (and nodes and CIDR identities); the
// eBPF datapath stores it as a bpf.IPCacheValue.
type IPCacheEntry struct {
	Identity identity.NumericIdentity
	// HostIP is the node the endpoint runs on (the tunnel/WireGuard peer).
	HostIP netip.Addr
	// Cluster is where the entry comes from ("" for the local cluster).
	Cluster string
}

// Peer is another node to route its pod CIDRs to, encrypted.
type Peer struct {
	Cluster, Node   string
	NodeIP          netip.Addr
	PodCIDRs        []netip.Prefix
	WireguardPubKey string
}

// ServiceKey is a Service frontend: what a client connects to.
type ServiceKey struct {
	Addr netip.Addr
	Port uint16
	// Protocol is "TCP", "UDP" or "SCTP".
	Protocol string
}

// Service is where connections to a frontend go: the selected backends
// (already chosen by affinity and readiness; the datapath picks among all
// of them). No backends: connections are refused.
type Service struct {
	Namespace, Name string
	Backends        []Backend
}

// Backend is one target of a frontend.
type Backend struct {
	Addr    netip.Addr
	Port    uint16
	Cluster string
}

// EndpointPolicy is what one local endpoint may receive and send: the
// per-endpoint policy map and configuration of the datapath.
type EndpointPolicy struct {
	// Identity is the endpoint's own security identity.
	Identity identity.NumericIdentity
	// EnforceIngress and EnforceEgress: in a direction not enforced
	// everything passes; in an enforced one only what Rules allow.
	EnforceIngress, EnforceEgress bool
	// Rules, sorted (see policy.SortRules); a deny wins over any allow.
	Rules []PolicyRule
}

// PolicyRule allows (or denies) traffic with peers of one identity on a
// protocol and port range.
type PolicyRule struct {
	// Identity of the peer; 0 matches every peer.
	Identity identity.NumericIdentity
	// Ingress: traffic to the endpoint; otherwise from it.
	Ingress bool
	// Proto is an IP protocol number (6 TCP, 17 UDP, 132 SCTP); 0 matches
	// every protocol.
	Proto uint8
	// Port is the destination port; 0 matches every port. EndPort, when
	// not 0, ends an inclusive range starting at Port.
	Port, EndPort uint16
	Deny          bool
	// ByAddress: Identity is a CIDR identity and the rule also matches a
	// peer whose address lies in that identity's prefix (the longest CIDR
	// prefix of the policies holding it), whatever the peer's own identity:
	// Kubernetes NetworkPolicy ipBlock, which selects pods by address. An
	// allow rule only. Cilium-style CIDR rules leave it false: they match
	// only peers whose identity is the CIDR's (addresses outside the pods).
	ByAddress bool
}

// Table is one kind of kernel state keyed by K. List returns exactly the
// keys the kernel holds (an Update's key comes back as given, or the Update
// fails), each with its value as far as the kernel records it: what Update
// wrote, or less of it (dptest.Kept says what, per implementation), never
// something equal to a value the kernel does not enforce.
type Table[K comparable, V any] interface {
	Update(ctx context.Context, key K, value V) error
	Delete(ctx context.Context, key K) error
	List(ctx context.Context) (map[K]V, error)
}

// Datapath is the kernel state the agent programs.
type Datapath interface {
	IPCache() Table[netip.Prefix, IPCacheEntry]
	Peers() Table[string, Peer] // key: cluster/node
	Services() Table[ServiceKey, Service]
	// Policies is keyed by the endpoint's datapath ID (see
	// state.Endpoint.DatapathID), the key of the kernel's per-endpoint maps.
	Policies() Table[uint16, EndpointPolicy]
	// Attachments are the host-side interfaces of local endpoints, keyed
	// by interface index (what the kernel knows them by): the datapath
	// enforces the policy of EndpointID on each.
	Attachments() Table[int, Attachment]
	// CIDRIdentities are the prefixes of the policies and their CIDR
	// identities, where rules by address (PolicyRule.ByAddress) look a
	// peer's address up, by longest prefix match.
	CIDRIdentities() Table[netip.Prefix, identity.NumericIdentity]
}

// Attachment is where an endpoint's traffic passes: the host side of its
// interface, as the CNI chain created it (from a state.AttachmentRow), keyed
// by its index.
type Attachment struct {
	// IfName is the interface's name (List: as the kernel names it now).
	IfName     string
	EndpointID uint16 // the endpoint's datapath ID
}

// AttachmentKey names the attachment of a container's interface (CNI's
// container ID and interface name): the key of state.AttachmentRow.
func AttachmentKey(containerID, ifName string) string { return containerID + "/" + ifName }

// Allows is the verdict the datapath gives a new flow of the endpoint with
// a peer: a matching deny rule drops it; in a direction not enforced it
// passes; otherwise a matching allow rule must exist. Every implementation
// must decide exactly this.
func (p EndpointPolicy) Allows(peer identity.NumericIdentity, ingress bool, proto uint8, port uint16) bool {
	return p.AllowsAt(peer, 0, ingress, proto, port)
}

// AllowsAt is Allows for a peer whose address has the CIDR identity
// addrCIDR (that of the longest CIDR prefix of the policies holding it; 0
// for none): a rule by address of that identity matches it too.
func (p EndpointPolicy) AllowsAt(peer, addrCIDR identity.NumericIdentity, ingress bool, proto uint8, port uint16) bool {
	match := func(r PolicyRule) bool {
		return r.Ingress == ingress &&
			(r.Identity == 0 || r.Identity == peer || r.ByAddress && !r.Deny && addrCIDR != 0 && r.Identity == addrCIDR) &&
			(r.Proto == 0 || r.Proto == proto) &&
			(r.Port == 0 || port >= r.Port && port <= max(r.Port, r.EndPort))
	}
	for _, r := range p.Rules {
		if r.Deny && match(r) {
			return false
		}
	}
	enforced := p.EnforceEgress
	if ingress {
		enforced = p.EnforceIngress
	}
	if !enforced {
		return true
	}
	for _, r := range p.Rules {
		if !r.Deny && match(r) {
			return true
		}
	}
	return false
}
