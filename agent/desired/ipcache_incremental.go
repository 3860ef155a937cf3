package desired

import (
	"net/netip"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/identity"
)

// The ipcache, one prefix at a time: IPCacheAt is IPCache's value for one
// prefix, by point lookups (O(log n) whatever the size of the state), and
// IPCacheKeys the prefixes a change of a table it joins may change.
// Together they let the ipcache reconciler handle a change in time
// proportional to the change. TestIPCacheAtMatchesTheJoin checks that they
// agree with IPCache.

// ipcacheTables are the tables IPCache joins.
var ipcacheTables = []string{state.TableIPCache, state.TableAttachments, state.TableEndpoints, state.TableNodes}

// IPCacheAt returns the entry IPCache has for p, if any: the ipcache row
// of p, else (a single address) this node's pod that the CNI plugin
// attached with that IP, else a node with that address.
func IPCacheAt(sn *state.Snapshot, cluster, node string, p netip.Prefix) (datapath.IPCacheEntry, bool) {
	if r, ok := sn.IPCacheRow(p); ok {
		return datapath.IPCacheEntry{Identity: r.ID, HostIP: r.HostIP, Cluster: r.Cluster}, true
	}
	if !p.IsSingleIP() {
		return datapath.IPCacheEntry{}, false
	}
	ip := p.Addr()
	if ats := sn.AttachmentsWithIP(ip); len(ats) > 0 {
		id := identity.ReservedInit
		if ep, ok := sn.Endpoint(ats[0].Namespace, ats[0].Pod); ok {
			id = ep.ID
		}
		return datapath.IPCacheEntry{Identity: id, Cluster: cluster}, true
	}
	if ns := sn.NodesWithAddr(ip); len(ns) > 0 {
		n := ns[0]
		id := identity.ReservedRemoteNode
		if n.Cluster == cluster && n.Name == node {
			id = identity.ReservedHost
		}
		return datapath.IPCacheEntry{Identity: id, HostIP: ip, Cluster: n.Cluster}, true
	}
	return datapath.IPCacheEntry{}, false
}

// IPCacheKeys adds to keys the prefixes whose desired entry change c may
// have changed.
func IPCacheKeys(sn *state.Snapshot, c state.Change, keys map[netip.Prefix]struct{}) {
	host := func(a netip.Addr) {
		if a.IsValid() {
			a = a.Unmap()
			keys[netip.PrefixFrom(a, a.BitLen())] = struct{}{}
		}
	}
	switch c.Table {
	case state.TableIPCache:
		for _, p := range state.IPCachePrefixes(c) {
			keys[p] = struct{}{}
		}
	case state.TableAttachments:
		for _, raw := range []any{c.Before, c.After} {
			if a, ok := raw.(*state.AttachmentRow); ok {
				for _, ip := range a.IPs {
					host(ip)
				}
			}
		}
	case state.TableNodes:
		for _, raw := range []any{c.Before, c.After} {
			if n, ok := raw.(*state.NodeRow); ok {
				for _, ip := range n.Addrs() {
					host(ip)
				}
			}
		}
	case state.TableEndpoints:
		// The endpoint's identity is that of its attachments' IPs.
		ep, _ := c.After.(*state.Endpoint)
		if ep == nil {
			ep, _ = c.Before.(*state.Endpoint)
		}
		if ep == nil {
			return
		}
		for _, at := range sn.Attachments() {
			if at.Namespace == ep.Namespace && at.Pod == ep.Name {
				for _, ip := range at.IPs {
					host(ip)
				}
			}
		}
	}
}

// IPCacheSource feeds the ipcache reconciler incrementally
// (reconciler.Incremental): the keys of the changes to the joined tables
// since its last call, read through IPCacheAt. It also wakes on the
// initialized table, whose changes make the agent ready to prune. One
// reconciler owns it: its methods are called from that goroutine only.
type IPCacheSource struct {
	st            *state.State
	cluster, node string
	sub           *state.Subscription // from the first Next; owned by the reconciler
	wake          chan struct{}       // Changed before the first Next
}

// NewIPCacheSource returns the ipcache source of st for this node. Its
// subscription to the state starts with the first Next, which is a full
// read.
func NewIPCacheSource(st *state.State, cluster, node string) *IPCacheSource {
	s := &IPCacheSource{st: st, cluster: cluster, node: node, wake: make(chan struct{}, 1)}
	s.wake <- struct{}{}
	return s
}

var _ reconciler.Incremental[netip.Prefix, datapath.IPCacheEntry] = (*IPCacheSource)(nil)

// Changed implements reconciler.Incremental.
func (s *IPCacheSource) Changed() <-chan struct{} {
	if s.sub == nil {
		return s.wake
	}
	return s.sub.Changed()
}

// Next implements reconciler.Incremental.
func (s *IPCacheSource) Next() (reconciler.View[netip.Prefix, datapath.IPCacheEntry], []netip.Prefix, bool) {
	if s.sub == nil {
		s.sub = s.st.Subscribe(append(ipcacheTables, state.TableInitialized)...)
	}
	changes, sn, lost := s.sub.Next()
	set := map[netip.Prefix]struct{}{}
	for _, c := range changes {
		IPCacheKeys(sn, c, set)
	}
	keys := make([]netip.Prefix, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	return ipcacheView{sn: sn, cluster: s.cluster, node: s.node}, keys, lost
}

// ipcacheView is the desired ipcache of one snapshot.
type ipcacheView struct {
	sn            *state.Snapshot
	cluster, node string
}

func (v ipcacheView) At(p netip.Prefix) (datapath.IPCacheEntry, bool) {
	return IPCacheAt(v.sn, v.cluster, v.node, p)
}

func (v ipcacheView) All() map[netip.Prefix]datapath.IPCacheEntry {
	return IPCache(v.sn, v.cluster, v.node)
}
