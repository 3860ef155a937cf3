// Package identity holds the value types that the agent and the apiserver
// share to describe security identities in a Cilium-ClusterMesh-compatible
// way: labels and their kvstore form, label selectors, numeric identities,
// the cluster-ID bit layout, reserved identities and cluster names.
//
// Rules:
//
//   - The package is dependency-free: it imports only the standard library
//     (never github.com/cilium/cilium), so every other package may import it.
//   - Values are immutable after construction. Label is a plain value;
//     Labels and Selector keep their contents unexported and every method
//     that "changes" them returns a new value. Slices handed out are copies.
//   - Parsers and validators never panic, whatever the input. They return an
//     error that quotes the offending input and says how to fix it. Errors
//     are lowercase and, where they come from a deeper check, wrapped with %w.
//
// Formats follow Cilium so that identities written by either side can be
// read by the other:
//
//   - a label prints as "source:key=value" ("source:key" when the value is
//     empty), e.g. "k8s:app=baz" or "reserved:host";
//   - a label set is stored in the kvstore as its labels sorted by key, each
//     written as "source:key=value;" (see Labels.SortedKVStoreString);
//   - a numeric identity is 24 bits wide, the cluster ID in its top bits
//     (see Layout).
package identity
