// Package kvstoremesh is the clustermesh-apiserver's cache of remote state
// (Cilium's KVStoreMesh): it connects once to every peer of the mesh
// configuration directory, validates what each peer announces with the
// agent's own untrusted-peer rules (agent/remote: identities in the peer's
// range with its cluster label and never reserved, ip entries inside its
// nodes' pod CIDRs, nodes and services under its own name and ID, nothing
// the local cluster's nodes or another peer's hold), and
// mirrors what it accepts into the local etcd under the cache layout
// (schema.Paths.Cache):
//
//	<root>/cache/nodes/v1/<peer>/<node>
//	<root>/cache/services/v1/<peer>/<ns>/<name>
//	<root>/cache/identities/v1/<peer>/id/<id>
//	<root>/cache/ip/v1/<peer>/<ip>[/<len>]
//
// next to the peer's cluster config <root>/cluster-config/<peer> with the
// "cached" capability, so that the local agents read every peer from the
// local etcd (one connection per peer per cluster instead of one per peer
// per node).
//
// Rules:
//   - A kind's synced marker (<root>/synced/<peer>/<root>/cache/<kind>/v1)
//     is written only after the peer's initial list of that kind was
//     validated and every accepted key of it is in the local etcd
//     (kvstore.SyncStore); nothing is pruned before that: keys found at
//     start (a restarted cache) stay until the peer's list is complete,
//     so agents see no delete for what did not change.
//   - A lost peer keeps its last state (Config.CacheTTL revokes it after
//     its heartbeat stopped that long); the keys the cache writes are on
//     leases (Config.LeaseTTL) that outlive a restart of the cache.
//   - Drain (the peer's cluster ID changed, its state was revoked, it left
//     the mesh configuration) deletes the peer's cached keys and its
//     synced markers at once, while the peer's cluster config stays, so
//     that the agents still watching see every delete. A cluster config
//     is deleted only for a peer that is no longer configured.
//   - Nothing is ever written under the local cluster's name.
//   - The cache owns every goroutine it starts; Run returns after they
//     stopped. Keys stay in etcd when Run returns.
package kvstoremesh
