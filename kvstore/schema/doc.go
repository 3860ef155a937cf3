// Package schema is the etcd key layout and value encoding shared with
// Cilium ClusterMesh (schema v1), so that a Cilium cluster and a cluster of
// ours can read each other's kvstore. It imports only the standard library;
// in particular it never imports github.com/cilium/cilium; the types here are
// our own and only their JSON is Cilium's.
//
// # Schema
//
// With the default root "cilium" (see Paths):
//
//	key                                          value
//	cilium/cluster-config/<cluster>              ClusterConfig JSON
//	cilium/state/nodes/v1/<cluster>/<node>       Node JSON
//	cilium/state/identities/v1/id/<id>           IdentityValue: sorted label string, e.g.
//	                                             "k8s:app=baz;k8s:io.kubernetes.pod.namespace=bar;"
//	cilium/state/ip/v1/default/<ip>              IPEntry JSON (host entry, Mask null)
//	cilium/state/ip/v1/default/<ip>/<len>        IPEntry JSON (prefix entry, Mask set)
//	cilium/state/services/v1/<cluster>/<ns>/<n>  ClusterService JSON
//	cilium/synced/<cluster>/<prefix>             canary: <prefix> (e.g. cilium/state/nodes/v1)
//	                                             was fully listed once (value not decoded here)
//	cilium/.heartbeat                            timestamp refreshed by the writer
//
// <id> is decimal, 1..2^24-1, no sign and no leading zeros. <ip> is the
// canonical text form (netip.Addr.String, which equals net.IP.String for
// the addresses Cilium writes): no zone, no IPv4-mapped IPv6 form.
//
// The JSON of each value is byte-for-byte what Cilium's encoding/json writes
// for its own type (field names, tags, field order, omitempty), including
// its quirks: a nil net.IP encodes as "", a net.IPMask as base64, and a pod
// CIDR as the object {"IP":"10.0.0.0","Mask":"////AA=="} (Cilium's
// cidr.CIDR embeds *net.IPNet and has no JSON methods).
//
// # Rules
//
//   - Remote clusters are untrusted. Decoders never panic, whatever the input.
//     Every key and value is validated and every value is checked against its
//     key (names in the value must equal the key's segments).
//   - Every failure is a *DecodeError that names the etcd key and says what is
//     wrong; errors.Is(err, ErrMalformed) holds for all of them.
//   - A value must be a single JSON object: null, arrays, scalars, truncated
//     JSON, trailing data and wrongly typed or out-of-range fields are
//     rejected. Unknown fields are ignored, as Cilium does, so that newer
//     Cilium versions may add fields.
//   - Decoded values are normalised so that decode(Marshal(v)) == v: empty
//     omitempty collections come back nil.
//   - Marshal is plain encoding/json and does not validate: a value that the
//     decoder would reject can be written. Decode what you read, always.
//   - Key segments (cluster, node, namespace, name) are non-empty, at most 253
//     bytes of valid UTF-8, contain no '/', whitespace or control characters,
//     and are not "." or "..".
//   - Deeper checks belong elsewhere: label syntax (package identity),
//     cross-checks against the remote cluster's ClusterConfig (cluster ID of
//     nodes and services), and policy on which identities a cluster may use.
package schema
