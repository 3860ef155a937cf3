// Package remote connects the agent to one peer cluster's etcd and hands
// validated state to a Sink: nodes, identities, ip entries and global
// services.
//
// Remote clusters are untrusted (Cilium trusts a connected cluster fully; we
// do not). A peer may only announce:
//   - nodes and services under its own cluster name, with its cluster ID;
//   - identities in its own numeric range, never reserved, carrying its own
//     cluster label;
//   - ip entries inside the pod CIDRs of its own nodes, pointing to
//     identities of its own range.
//
// Anything else is rejected, counted per reason and logged at a bounded
// rate, while the peer's honest data is accepted. An ip entry that arrives
// before the node whose CIDR holds it is quarantined and re-checked when the
// peer's nodes change, never accepted early.
//
// Rules: the sink is called from the peer's goroutines (one per prefix);
// nothing of a peer is removed before the peer is ready, except what the
// peer itself deletes; a change of the peer's cluster ID drains all of it.
//
// Connection rules: a peer whose config pins a cluster ID (Trust, recorded
// by `clustermesh connect`) is refused while it announces another, and no
// other peer may hold that ID (Registry: the pinned owner wins, whatever
// the arrival order). Every reconnection, including one caused by a change
// of the peer's cluster config, waits for the backoff. A peer revoked for a
// stale heartbeat is read again only once its heartbeat moved (revoke.go).
// Drains for a revocation or a lost ID happen after the peer's stores
// stopped, so that nothing it sends afterwards is accepted.
package remote
