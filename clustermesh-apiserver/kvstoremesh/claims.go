package kvstoremesh

import (
	"net/netip"
	"sync"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// claims tells a peer's validator what the other peers hold: their pod
// CIDRs recorded by `clustermesh connect` and their accepted nodes' pod
// CIDRs and addresses, so that no peer can claim another's. (The local
// cluster's own nodes are checked by the agents, which validate what they
// read from the cache with the same rules and know them.)
type claims struct {
	trusts func() map[string]remote.Trust

	mu    sync.Mutex                      // guards nodes
	nodes map[string]map[string]nodeClaim // cluster → node → what it holds
}

type nodeClaim struct {
	cidrs []netip.Prefix
	addrs []netip.Addr
}

func newClaims() *claims { return &claims{nodes: map[string]map[string]nodeClaim{}} }

var _ remote.Claims = (*claims)(nil)

func (c *claims) setNode(cluster string, n schema.Node) {
	nc := nodeClaim{cidrs: n.PodCIDRs()}
	for _, a := range n.IPAddresses {
		if addr, ok := netip.AddrFromSlice(a.IP); ok {
			nc.addrs = append(nc.addrs, addr.Unmap())
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[cluster] == nil {
		c.nodes[cluster] = map[string]nodeClaim{}
	}
	c.nodes[cluster][n.Name] = nc
}

func (c *claims) deleteNode(cluster, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.nodes[cluster], name)
}

func (c *claims) drain(cluster string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.nodes, cluster)
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// PodCIDROwner implements remote.Claims.
func (c *claims) PodCIDROwner(peer string, p netip.Prefix) (string, bool) {
	p = unmapPrefix(p)
	if c.trusts != nil {
		for name, t := range c.trusts() {
			if name == peer {
				continue
			}
			for _, q := range t.PodCIDRs {
				if q.Overlaps(p) {
					return name, true
				}
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, nodes := range c.nodes {
		if name == peer {
			continue
		}
		for _, n := range nodes {
			for _, q := range n.cidrs {
				if unmapPrefix(q).Overlaps(p) {
					return name, true
				}
			}
		}
	}
	return "", false
}

// NodeIPOwner implements remote.Claims.
func (c *claims) NodeIPOwner(peer string, ip netip.Addr) (string, bool) {
	ip = ip.Unmap()
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, nodes := range c.nodes {
		if name == peer {
			continue
		}
		for _, n := range nodes {
			for _, a := range n.addrs {
				if a == ip {
					return name, true
				}
			}
		}
	}
	return "", false
}
