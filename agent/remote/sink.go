package remote

import (
	"net/netip"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Kind is one of the four prefixes a peer exports.
type Kind string

// The prefixes of a peer.
const (
	KindNodes      Kind = "nodes"
	KindIdentities Kind = "identities"
	KindIPs        Kind = "ip"
	KindServices   Kind = "services"
)

// Kinds lists every kind, in the order they are synced.
var Kinds = []Kind{KindNodes, KindIdentities, KindIPs, KindServices}

// Sink receives a peer's validated state. Implementations must be safe for
// concurrent use: each kind is delivered from its own goroutine.
type Sink interface {
	UpsertNode(cluster string, n schema.Node)
	DeleteNode(cluster, name string)
	UpsertIdentity(cluster string, id identity.NumericIdentity, labels identity.Labels)
	DeleteIdentity(cluster string, id identity.NumericIdentity)
	UpsertIP(cluster string, prefix netip.Prefix, e schema.IPEntry)
	DeleteIP(cluster string, prefix netip.Prefix)
	UpsertService(cluster string, s schema.ClusterService)
	DeleteService(cluster, namespace, name string)
	// Drain removes everything of the cluster (its ID changed or it was
	// disconnected).
	Drain(cluster string)
}

// Flusher is optionally implemented by a Sink that buffers writes: Flush is
// called at the end of every batch read from etcd (a list, a watch
// response), and before a kind is reported synced.
type Flusher interface {
	Flush()
}

// ReadyNotifier is optionally implemented by a Sink that wants to know when
// a peer becomes ready (every prefix synced, after the data was delivered)
// or stops being ready, e.g. to wake consumers waiting to prune.
type ReadyNotifier interface {
	SetReady(cluster string, ready bool)
}

// Observer is optionally implemented by a Sink that follows a peer's
// connection, such as the clustermesh-apiserver's cache of remote state,
// which republishes each peer's config and synced markers.
type Observer interface {
	// Adopted is called once the peer's cluster config was validated and
	// before its state is read under it, after any drain the config
	// caused (a change of ID or layout), with the peer's cluster ID and
	// max connected clusters.
	Adopted(cluster string, id identity.ClusterID, maxConnectedClusters uint32)
	// KindSynced is called each time kind's initial list (or a relist
	// after a broken watch) was delivered to the sink, after its data.
	KindSynced(cluster string, kind Kind)
}
