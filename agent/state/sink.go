package state

import (
	"net"
	"net/netip"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// RemoteSink returns the sink the peers of package remote write into. Each
// call is one transaction; Drain removes all of a cluster in one. A write
// that cannot be applied (an empty cluster or name, an invalid prefix) is
// logged and dropped: remote.Sink has no way to report it.
func (s *State) RemoteSink() remote.Sink { return remoteSink{s: s} }

type remoteSink struct{ s *State }

var _ remote.Sink = remoteSink{}

func (r remoteSink) apply(op, cluster string, fn func(*WriteTxn) error) {
	if err := r.s.Update(fn); err != nil {
		r.s.log.Warn("dropping remote state change", "op", op, "cluster", cluster, "error", err)
	}
}

func (r remoteSink) UpsertNode(cluster string, n schema.Node) {
	r.apply("upsert node", cluster, func(w *WriteTxn) error { return w.UpsertNode(cluster, n) })
}

func (r remoteSink) DeleteNode(cluster, name string) {
	r.apply("delete node", cluster, func(w *WriteTxn) error { return w.DeleteNode(cluster, name) })
}

func (r remoteSink) UpsertIdentity(cluster string, id identity.NumericIdentity, labels identity.Labels) {
	r.apply("upsert identity", cluster, func(w *WriteTxn) error { return w.UpsertIdentity(cluster, id, labels) })
}

func (r remoteSink) DeleteIdentity(cluster string, id identity.NumericIdentity) {
	r.apply("delete identity", cluster, func(w *WriteTxn) error { return w.DeleteIdentity(cluster, id) })
}

func (r remoteSink) UpsertIP(cluster string, prefix netip.Prefix, e schema.IPEntry) {
	row := IPCacheFromSchema(cluster, prefix, e)
	r.apply("upsert ip", cluster, func(w *WriteTxn) error { return w.UpsertIP(row) })
}

func (r remoteSink) DeleteIP(cluster string, prefix netip.Prefix) {
	r.apply("delete ip", cluster, func(w *WriteTxn) error { return w.DeleteIP(cluster, prefix) })
}

func (r remoteSink) UpsertService(cluster string, cs schema.ClusterService) {
	r.apply("upsert service", cluster, func(w *WriteTxn) error { return w.UpsertService(cluster, cs) })
}

func (r remoteSink) DeleteService(cluster, namespace, name string) {
	r.apply("delete service", cluster, func(w *WriteTxn) error { return w.DeleteService(cluster, namespace, name) })
}

func (r remoteSink) Drain(cluster string) {
	r.apply("drain", cluster, func(w *WriteTxn) error { return w.Drain(cluster) })
}

// IPCacheFromSchema returns the ipcache row of a kvstore ip entry of
// cluster at prefix. An invalid HostIP becomes the zero Addr.
func IPCacheFromSchema(cluster string, prefix netip.Prefix, e schema.IPEntry) IPCacheRow {
	return IPCacheRow{
		Prefix:    prefix,
		Cluster:   cluster,
		ID:        identity.NumericIdentity(e.ID),
		HostIP:    addrFromIP(e.HostIP),
		Namespace: e.K8sNamespace,
		Pod:       e.K8sPodName,
	}
}

func addrFromIP(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

// MarkInitialized records that source has delivered its initial state. It
// is idempotent; an empty source is logged and ignored.
func (s *State) MarkInitialized(source string) {
	if err := s.Update(func(w *WriteTxn) error { return w.MarkInitialized(source) }); err != nil {
		s.log.Warn("cannot mark source initialized", "source", source, "error", err)
	}
}

// Initialized reports whether every one of sources is initialized (true
// when none is given).
func (s *State) Initialized(sources ...string) bool {
	return s.Snapshot().Initialized(sources...)
}

// SetInitialized records whether source has delivered its state (a peer
// that reconnects from scratch is not initialized again until it is
// ready). It commits only a change.
func (s *State) SetInitialized(source string, done bool) {
	err := s.Update(func(w *WriteTxn) error {
		if done {
			return w.MarkInitialized(source)
		}
		return w.deleteByID(TableInitialized, source)
	})
	if err != nil {
		s.log.Warn("cannot record a source's readiness", "source", source, "error", err)
	}
}

// PeerSource is the source name of a peer cluster's readiness.
func PeerSource(cluster string) string { return "peer/" + cluster }
