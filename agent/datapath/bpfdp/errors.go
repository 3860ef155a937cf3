package bpfdp

import "errors"

// ErrNotSupported is returned by Update for a value the eBPF datapath
// cannot hold (an IPv6 or SCTP service frontend, an IPv6 backend or tunnel
// endpoint); the reconciler keeps retrying it and reports it in its status.
var ErrNotSupported = errors.New("not supported by the eBPF datapath")

// ErrNotCanonical is returned by Update for a key the kernel would store
// under another key (an unmasked or IPv4-mapped prefix): List would return
// the other key, and a reconciler would prune what it had just written.
var ErrNotCanonical = errors.New("key not in canonical form")
