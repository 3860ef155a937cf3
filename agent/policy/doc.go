// Package policy computes, for every local endpoint, the identity-aware
// rules the datapath enforces, from Kubernetes NetworkPolicies and the
// project's ClusterMeshNetworkPolicy and ClusterMeshClusterwideNetworkPolicy
// (CiliumNetworkPolicy's shape), across every cluster of the mesh.
//
// Model:
//
//   - A policy compiles into rules. A rule has a subject (which local
//     endpoints it applies to), a direction, allow or deny, peers (selectors
//     over identities, or every identity) and ports (every port, numbers,
//     ranges, or named container ports).
//   - Peers are selected by the labels of their identity, which carry the
//     cluster (io.cilium.k8s.policy.cluster) and the namespace. A peer
//     selector without a cluster requirement selects only the local cluster
//     when DefaultLocalCluster is set (the default, as in Cilium 1.19).
//   - CIDR peers (ipBlock, fromCIDR/toCIDR(Set)) select CIDR identities the
//     engine allocates for every prefix a policy names (the CIDR and its
//     exceptions), in the local scope (1<<24 and up); the agent puts them
//     in the ipcache, so that the longest prefix of an address decides.
//   - The output for an endpoint is a datapath.EndpointPolicy: whether each
//     direction is enforced (some policy selecting it has that direction)
//     and the set of (peer identity or any, direction, protocol, port range,
//     allow/deny) rules. Allowed reports the verdict the datapath gives.
//
// Incremental by construction: every distinct peer selector is cached with
// the identities it selects and the rules that use it. An identity that
// appears or disappears is matched against each cached selector once; only
// the selectors whose set changed, and the endpoints of the rules using
// them, change (reference-counted rule sets). Recompute rebuilds everything
// from scratch; tests check that both always agree.
//
// Rules: an invalid part of a policy (selector, entity, CIDR, port) is left
// out and reported in Problems with the reason; the rest of the policy
// applies. The Engine is not safe for concurrent use: one goroutine owns it.
package policy
