// Package bpfdp implements datapath.Datapath with the eBPF datapath of
// package bpf, so that the agent's reconcilers program the kernel through
// the same interface (and pass the same tests, see dptest) as the in-memory
// datapath.
//
// The kernel maps do not hold everything the interface carries (an ipcache
// entry's cluster, a service's name and its backends' clusters, policy
// rules as given rather than expanded into entries). What they miss is kept
// in pinned companion maps under MetaDir(PinDir), so that it has the
// lifetime of the bpf pins and survives an agent restart but not a reboot:
//   - ipcache: an entry's Flags byte (free for the caller in package bpf) is
//     the index of its cluster name in a pinned array of 256 names.
//   - services and policies: a record per frontend or endpoint, in a pinned
//     hash map of checksummed chunks, holding the whole value as written.
//
// Rules:
//   - The kernel maps are the truth, records a hint. List returns a record's
//     value only if it agrees with what the kernel maps hold (a policy
//     record's rules must expand to exactly the kernel's entries); otherwise
//     it returns what it can rebuild from the kernel maps alone (no names,
//     rules one per entry), which a reconciler sees as different and
//     rewrites. A crash between a kernel write and a record write therefore
//     costs one rewrite, never a wrong List.
//   - Update writes the kernel maps, then the record; Delete removes the
//     record, then the kernel state. No record outlives its kernel object.
//   - Keys are stored as given or refused: Update fails with ErrNotCanonical
//     for a key the kernel would normalize (an unmasked prefix), since List
//     would return another key, and with ErrNotSupported for what the kernel
//     cannot hold (IPv6 or SCTP frontends, IPv6 tunnel endpoints). Delete of
//     such a key succeeds: it was never stored.
//   - Peers has no kernel part yet (routing and WireGuard arrive with their
//     own work): it is an in-process table, empty after a restart.
//   - Close keeps every pin; Unpin removes them.
package bpfdp
