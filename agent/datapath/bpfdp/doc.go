// Package bpfdp implements datapath.Datapath with the eBPF datapath of
// package bpf, so that the agent's reconcilers program the kernel through
// the same interface (and pass the same tests, see dptest) as the in-memory
// datapath.
//
// The kernel maps are the only state: nothing is kept beside them that the
// BPF programs do not read. List therefore returns what the kernel holds,
// which is less than the interface carries (KeptIPCache, KeptService,
// KeptPolicy say exactly what): no ipcache entry's cluster, no service
// name nor backend cluster, policy rules one per kernel entry rather than
// as given, attachments' interface names as netlink reports them. A
// reconciler that adopts such a List after an agent restart sees those
// entries differ from the desired ones and rewrites them, once; every
// Update of a key the kernel holds is therefore in place and
// non-disruptive:
//   - ipcache: one map update of the entry;
//   - services: the backend slots are overwritten in place, the count last,
//     no slot is deleted when the backends are the same (bpf.Services);
//     connections are translated at connect time, established ones never
//     look at the map;
//   - policies: bpf.Policy.Set leaves rules equal to the kernel's as they
//     are and swaps others atomically; enforcement is relaxed before the
//     rules change and tightened after, from the configuration the kernel
//     holds (never stricter than both the old and the new policy);
//   - attachments: attaching an attached interface keeps its TCX links or
//     clsact filters and only sets the endpoint ID.
//
// Rules:
//   - Keys are stored as given or refused: Update fails with ErrNotCanonical
//     for a key the kernel would normalize (an unmasked prefix), since List
//     would return another key, and with ErrNotSupported for what the kernel
//     cannot hold (IPv6 or SCTP frontends, IPv6 tunnel endpoints). Delete of
//     such a key succeeds: it was never stored.
//   - A listed value never looks equal to a value the kernel does not
//     enforce: policy entries no rules expand to are listed with an invalid
//     rule, so that they are rewritten.
//   - Peers has no kernel part yet (routing and WireGuard arrive with their
//     own work): it is an in-process table, empty after a restart.
//   - Close keeps every pin; Unpin removes them. New removes the pins of
//     the companion maps older versions kept (cm_records, cm_clusters).
package bpfdp
