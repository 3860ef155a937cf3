// Package state holds the agent's merged desired state: the identities, ip
// entries, nodes and services of the local cluster and of every peer, in
// go-memdb tables. Watchers write into the tables; reconcilers read them and
// program the kernel.
//
// Rules:
//
//   - The tables hold desired state only. Nothing here says what was
//     programmed: reconcilers keep that themselves.
//   - Every write is one memdb transaction (State.Update): a batch of
//     changes is seen entirely or not at all. Remote.Sink calls are one
//     transaction each; Drain removes a whole cluster in one.
//   - Rows are immutable once inserted: a change inserts a new row (copy on
//     write). Readers must not modify rows, nor the maps and slices of the
//     schema values they hold; writers hand those over and must not keep
//     modifying them. The one exception is internal: a block of host
//     entries of the ipcache (ipBlock), or a part of one, created by a
//     write transaction is changed in place by that same transaction
//     until it commits, since no reader can see it before.
//   - Readers take snapshots (Txn(false), wrapped by State.Snapshot): a
//     snapshot never changes, however long it is kept. A consumer waits
//     for the tables it reads (State.WatchTables), or reads their changes
//     commit after commit (State.Subscribe: the keys that changed and a
//     snapshot with their values), rather than for every commit
//     (State.Changed); see docs/architecture.md, "The agent's core".
//   - Rows of remote and local sources are told apart by their Cluster
//     field (the local cluster writes its own name); the package gives the
//     local cluster no special treatment. A cluster removes only its own
//     rows: deleting an ip entry or identity that another cluster has since
//     taken over is a no-op.
//   - Each source (the local watchers, each peer and kind) reports that it
//     is initialized with MarkInitialized; readers wait for the sources they
//     need with Initialized before acting on the absence of a row.
package state
