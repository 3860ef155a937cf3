package desired

import (
	"net/netip"

	"github.com/clustermesh/clustermesh/agent/datapath"
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
var ipcacheTables = []string{state.TableIPCache, state.TableAttachments, state.TableEndpoints, state.TableNodes, state.TableCIDRIdentities}

// IPCacheAt returns the entry IPCache has for p, if any: the ipcache row
// of p, else (a single address) this node's pod that the CNI plugin
// attached with that IP, else a node with that address, else the CIDR
// identity of p.
func IPCacheAt(sn *state.Snapshot, cluster, node string, p netip.Prefix) (datapath.IPCacheEntry, bool) {
	if r, ok := sn.IPCacheRow(p); ok {
		return datapath.IPCacheEntry{Identity: r.ID, HostIP: r.HostIP, Cluster: r.Cluster}, true
	}
	if !p.IsSingleIP() {
		return cidrEntry(sn, cluster, p)
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
	return cidrEntry(sn, cluster, p)
}

// cidrEntry is the ipcache entry of p's CIDR identity, if it has one.
func cidrEntry(sn *state.Snapshot, cluster string, p netip.Prefix) (datapath.IPCacheEntry, bool) {
	if id, ok := sn.CIDRIdentity(p); ok {
		return datapath.IPCacheEntry{Identity: id, Cluster: cluster}, true
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
	case state.TableCIDRIdentities:
		for _, raw := range []any{c.Before, c.After} {
			if r, ok := raw.(*state.CIDRIdentityRow); ok {
				keys[r.Prefix] = struct{}{}
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

// NewIPCacheSource returns the ipcache's incremental source for this
// node (see Source).
func NewIPCacheSource(st *state.State, cluster, node string) *Source[netip.Prefix, datapath.IPCacheEntry] {
	return NewSource(st, ipcacheJoin{cluster: cluster, node: node}, ipcacheTables...)
}

// ipcacheJoin is IPCache, IPCacheAt and IPCacheKeys as a Join.
type ipcacheJoin struct{ cluster, node string }

func (j ipcacheJoin) All(sn *state.Snapshot) map[netip.Prefix]datapath.IPCacheEntry {
	return IPCache(sn, j.cluster, j.node)
}

func (j ipcacheJoin) At(sn *state.Snapshot, p netip.Prefix) (datapath.IPCacheEntry, bool) {
	return IPCacheAt(sn, j.cluster, j.node, p)
}

func (ipcacheJoin) Keys(sn *state.Snapshot, c state.Change, keys map[netip.Prefix]struct{}) {
	IPCacheKeys(sn, c, keys)
}
