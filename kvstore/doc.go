// Package kvstore is the project's layer over etcd: how a cluster's state is
// written to its etcd and how a peer reads it without ever trusting half a
// picture.
//
//   - Client: one connection (mTLS, keepalives, a rate limiter), made from
//     the per-cluster YAML config file users already have (ClientConfig).
//     Connect fails fast with ErrTLS or ErrUnreachable and a hint.
//   - BootstrapAuth creates the admin, root and read-only remote users and
//     roles (RBAC); with client-certificate auth the certificate's common
//     name is the etcd user. The embedded etcd server itself is package
//     kvstore/etcdserver: this package uses the etcd client only, so that
//     the agent does not link the etcd server.
//   - SyncStore (writer): keeps a prefix equal to a desired set, in batched
//     transactions, keys on shared leases of at most ~1000 keys that are
//     re-created when lost, and a synced marker written only after the whole
//     initial set (and the deletion of stale keys) is in etcd.
//   - WatchStore (reader): waits for the exporter's synced marker, lists at
//     one revision and watches from the next; after compaction or a replaced
//     server it lists again and turns vanished keys into deletes.
//   - RunClusterConfig / GetClusterConfig, RunHeartbeat / HeartbeatMonitor.
//
// Rules:
//   - ctx is the first argument of everything that blocks; every goroutine
//     started here is owned by a Run method and has ended when it returns.
//   - A WatchHandler is called from one goroutine, in etcd's order; events
//     for a key are never lost or reordered.
//   - Nothing of a prefix is reported synced before its marker exists (when
//     a marker is configured), and a writer never writes its marker before
//     every initial key is in etcd.
//   - Values are opaque bytes here; their schema and decoders live in
//     kvstore/schema and remote values are untrusted.
package kvstore
