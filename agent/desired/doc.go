// Package desired computes what the agent's datapath tables must hold from
// a snapshot of the merged state (agent/state): the joins the reconcilers
// read.
//
//   - IPCache: every pod IP of every cluster, this node's pods by their CNI
//     addresses until the kubelet reports them, and every node's addresses
//     (this node as host, the others as remote-node). IPCacheAt computes
//     one prefix of it by point lookups and IPCacheKeys the prefixes a
//     change may affect, so that NewIPCacheSource feeds the ipcache
//     reconciler in time proportional to the change.
//   - Peers: the routing peers (every other node, with an address).
//   - Services: every frontend of every local Service with its selected
//     backends, local and from peers.
//   - Policies and Attachments: this node's endpoints' policies and the
//     CNI attachments whose policy is computed, by host interface index.
//
// Rules: the joins are functions of a snapshot (no I/O, nothing kept, the
// snapshot is not modified); only IPCacheSource keeps something, its
// subscription to the state. The cluster and node arguments are the local
// cluster's name and this node's name.
package desired
