// Package mesh pairs clusters: it reads each cluster's mesh settings from
// the ConfigMap and Secrets the project's chart installs, validates that the
// clusters can be meshed, and connects or disconnects them by creating or
// deleting per-peer read-only etcd users and writing or removing the peer
// entries of each cluster's mesh Secret (the directory the agents watch).
//
// Rules: every check runs before the first write; writes are idempotent
// (an already-paired pair is left untouched, byte for byte); when a write
// fails, the writes already made by the same run are undone so that no
// cluster is left reading a peer that does not read it back (and the same
// command run again finishes the job when the undo fails too). Nothing here
// prints: results are returned to the caller.
package mesh
