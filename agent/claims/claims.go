// Package claims tells the validator of peer clusters' data (agent/remote)
// what the local cluster and the other peers already hold, so that a peer
// cannot claim it: pod CIDRs, node addresses and WireGuard public keys,
// from the state's node rows and the trust recorded for each peer.
package claims

import (
	"net/netip"
	"sync"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/agent/state"
)

// Claims is the agent's remote.Claims and remote.KeyClaims: what the
// local cluster and the other peers hold, so that a peer cannot claim it.
//
//   - A pod CIDR belongs to the local cluster when it overlaps a pod CIDR
//     of a local node (a row of the nodes table under the local cluster's
//     name), and to another peer when it overlaps the pod-cidrs connect
//     recorded for that peer (trusts), whether or not it is connected.
//   - A node address belongs to the local cluster when a local node has
//     it, and to another peer when one of that peer's accepted nodes (its
//     rows of the nodes table) has it.
//
// Rules: safe for concurrent use (peers call it from their goroutines);
// each call costs map lookups and prefix comparisons, no scan of the state:
// each cluster's pod CIDRs and addresses are indexed once and indexed again
// only after memdb's watch channel of that cluster's node rows fired (a
// spurious rebuild is possible, a missed change is not). When several
// clusters match, the first name in byte order is returned, so that the
// answer does not depend on map order.
type Claims struct {
	local string
	state *state.State
	// trusts returns every configured peer's recorded trust (a map that
	// is never modified); set by SetTrusts before the peers run.
	trusts func() map[string]remote.Trust

	mu    sync.Mutex            // guards nodes
	nodes map[string]*nodeIndex // cluster → its node rows, indexed: the local cluster and configured peers
}

// nodeIndex is what one cluster's node rows claim.
type nodeIndex struct {
	changed <-chan struct{} // closed once the cluster's node rows changed
	cidrs   []netip.Prefix
	addrs   map[netip.Addr]struct{}
	keys    map[string]struct{} // WireGuard public keys
}

// New returns the claims of the local cluster named local, read from st.
// Until SetTrusts, no other peer holds anything.
func New(local string, st *state.State) *Claims {
	return &Claims{local: local, state: st, nodes: map[string]*nodeIndex{}}
}

// SetTrusts sets where the configured peers' recorded trusts are read
// (peers.Manager.Trusts: a map that is never modified). Call it before any
// peer runs: it is not synchronized with the queries.
func (c *Claims) SetTrusts(trusts func() map[string]remote.Trust) { c.trusts = trusts }

var _ remote.Claims = (*Claims)(nil)

// PodCIDROwner implements remote.Claims.
func (c *Claims) PodCIDROwner(peer string, p netip.Prefix) (string, bool) {
	if !p.IsValid() {
		return "", false
	}
	p = unmapPrefix(p)
	trusts := c.peerTrusts()
	if peer != c.local && overlapsAny(c.index(c.local, trusts).cidrs, p) {
		return c.local, true
	}
	owner := ""
	for name, tr := range trusts {
		if name != peer && name != c.local && (owner == "" || name < owner) && overlapsAny(tr.PodCIDRs, p) {
			owner = name
		}
	}
	return owner, owner != ""
}

// NodeIPOwner implements remote.Claims.
func (c *Claims) NodeIPOwner(peer string, ip netip.Addr) (string, bool) {
	if !ip.IsValid() {
		return "", false
	}
	ip = ip.Unmap().WithZone("")
	trusts := c.peerTrusts()
	if _, ok := c.index(c.local, trusts).addrs[ip]; ok && peer != c.local {
		return c.local, true
	}
	owner := ""
	for name := range trusts {
		if name == peer || name == c.local || (owner != "" && name >= owner) {
			continue
		}
		if _, ok := c.index(name, trusts).addrs[ip]; ok {
			owner = name
		}
	}
	return owner, owner != ""
}

var _ remote.KeyClaims = (*Claims)(nil)

// WireGuardKeyOwner implements remote.KeyClaims: the local cluster, or
// another configured peer, whose nodes hold key.
func (c *Claims) WireGuardKeyOwner(peer, key string) (string, bool) {
	if key == "" {
		return "", false
	}
	trusts := c.peerTrusts()
	if _, ok := c.index(c.local, trusts).keys[key]; ok && peer != c.local {
		return c.local, true
	}
	owner := ""
	for name := range trusts {
		if name == peer || name == c.local || (owner != "" && name >= owner) {
			continue
		}
		if _, ok := c.index(name, trusts).keys[key]; ok {
			owner = name
		}
	}
	return owner, owner != ""
}

func (c *Claims) peerTrusts() map[string]remote.Trust {
	if c.trusts == nil {
		return nil
	}
	return c.trusts()
}

// index returns what cluster's node rows claim, indexing them again when
// they changed since the last call. The indexes of clusters that are
// neither local nor in trusts (removed peers) are dropped.
func (c *Claims) index(cluster string, trusts map[string]remote.Trust) *nodeIndex {
	c.mu.Lock()
	defer c.mu.Unlock()
	if idx, ok := c.nodes[cluster]; ok {
		select {
		case <-idx.changed:
		default:
			return idx
		}
	}
	if len(c.nodes) > len(trusts) {
		for name := range c.nodes {
			if _, ok := trusts[name]; !ok && name != c.local {
				delete(c.nodes, name)
			}
		}
	}
	idx := buildIndex(c.state.Snapshot(), cluster)
	c.nodes[cluster] = idx
	return idx
}

// buildIndex indexes cluster's rows of the nodes table in sn.
func buildIndex(sn *state.Snapshot, cluster string) *nodeIndex {
	idx := &nodeIndex{changed: sn.Changed(), addrs: map[netip.Addr]struct{}{}, keys: map[string]struct{}{}}
	it, err := sn.Txn().Get(state.TableNodes, state.IndexCluster, cluster)
	if err != nil {
		return idx // a bug (bad table or index name): sn.Changed rebuilds at the next commit
	}
	if ch := it.WatchCh(); ch != nil {
		idx.changed = ch // only this cluster's rows wake it
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		row, ok := raw.(*state.NodeRow)
		if !ok {
			continue
		}
		for _, p := range row.Node.PodCIDRs() {
			idx.cidrs = append(idx.cidrs, unmapPrefix(p))
		}
		for _, a := range row.Node.IPAddresses {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				idx.addrs[ip.Unmap()] = struct{}{}
			}
		}
		if k := row.Node.WireguardPubKey; k != "" {
			idx.keys[k] = struct{}{}
		}
	}
	return idx
}

// unmapPrefix returns p masked, as an IPv4 prefix when it is an
// IPv4-mapped one.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

func overlapsAny(set []netip.Prefix, p netip.Prefix) bool {
	for _, q := range set {
		if q.Overlaps(p) {
			return true
		}
	}
	return false
}
