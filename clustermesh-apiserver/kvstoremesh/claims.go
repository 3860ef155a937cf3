package kvstoremesh

import (
	"net/netip"
	"sync"
	"time"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// claims tells a peer's validator what the rest of the mesh holds, as the
// agent's claims do: the local cluster's nodes (pod CIDRs, addresses,
// WireGuard keys), the other peers' pod CIDRs recorded by `clustermesh
// connect`, and the other peers' accepted nodes, so that no peer can claim
// another's.
type claims struct {
	localName string
	// local lists the local cluster's nodes (nil: none known).
	local  func() []schema.Node
	trusts func() map[string]remote.Trust

	mu    sync.Mutex                      // guards nodes, localIdx, localAt
	nodes map[string]map[string]nodeClaim // peer → node → what it holds
	// localIdx is the local nodes' claims as of localAt, rebuilt at most
	// every localRefresh: peers' node events do not each list the
	// cluster's nodes.
	localIdx map[string]nodeClaim
	localAt  time.Time
}

// localRefresh bounds how stale the local nodes' claims may be.
const localRefresh = time.Second

type nodeClaim struct {
	cidrs []netip.Prefix
	addrs []netip.Addr
	key   string
}

func newClaims(localName string, local func() []schema.Node) *claims {
	return &claims{localName: localName, local: local, nodes: map[string]map[string]nodeClaim{}}
}

var (
	_ remote.Claims    = (*claims)(nil)
	_ remote.KeyClaims = (*claims)(nil)
)

func claimOf(n schema.Node) nodeClaim {
	nc := nodeClaim{key: n.WireguardPubKey}
	for _, p := range n.PodCIDRs() {
		nc.cidrs = append(nc.cidrs, unmapPrefix(p))
	}
	for _, a := range n.IPAddresses {
		if addr, ok := netip.AddrFromSlice(a.IP); ok {
			nc.addrs = append(nc.addrs, addr.Unmap())
		}
	}
	return nc
}

func (c *claims) setNode(cluster string, n schema.Node) {
	nc := claimOf(n)
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

// each calls f with every cluster's node claims but peer's, the local
// cluster first, until f returns true; c.mu is held.
func (c *claims) eachLocked(peer string, f func(cluster string, n nodeClaim) bool) {
	if c.local != nil && peer != c.localName {
		if c.localIdx == nil || time.Since(c.localAt) > localRefresh {
			c.localIdx = map[string]nodeClaim{}
			for _, n := range c.local() {
				c.localIdx[n.Name] = claimOf(n)
			}
			c.localAt = time.Now()
		}
		for _, n := range c.localIdx {
			if f(c.localName, n) {
				return
			}
		}
	}
	for name, nodes := range c.nodes {
		if name == peer {
			continue
		}
		for _, n := range nodes {
			if f(name, n) {
				return
			}
		}
	}
}

// PodCIDROwner implements remote.Claims.
func (c *claims) PodCIDROwner(peer string, p netip.Prefix) (string, bool) {
	if !p.IsValid() {
		return "", false
	}
	p = unmapPrefix(p)
	owner := ""
	c.mu.Lock()
	c.eachLocked(peer, func(cluster string, n nodeClaim) bool {
		for _, q := range n.cidrs {
			if q.Overlaps(p) {
				owner = cluster
				return true
			}
		}
		return false
	})
	c.mu.Unlock()
	if owner != "" {
		return owner, true
	}
	if c.trusts != nil {
		for name, t := range c.trusts() {
			if name == peer || name == c.localName {
				continue
			}
			for _, q := range t.PodCIDRs {
				if q.Overlaps(p) && (owner == "" || name < owner) {
					owner = name
				}
			}
		}
	}
	return owner, owner != ""
}

// NodeIPOwner implements remote.Claims.
func (c *claims) NodeIPOwner(peer string, ip netip.Addr) (string, bool) {
	if !ip.IsValid() {
		return "", false
	}
	ip = ip.Unmap().WithZone("")
	owner := ""
	c.mu.Lock()
	defer c.mu.Unlock()
	c.eachLocked(peer, func(cluster string, n nodeClaim) bool {
		for _, a := range n.addrs {
			if a == ip {
				owner = cluster
				return true
			}
		}
		return false
	})
	return owner, owner != ""
}

// WireGuardKeyOwner implements remote.KeyClaims.
func (c *claims) WireGuardKeyOwner(peer, key string) (string, bool) {
	if key == "" {
		return "", false
	}
	owner := ""
	c.mu.Lock()
	defer c.mu.Unlock()
	c.eachLocked(peer, func(cluster string, n nodeClaim) bool {
		if n.key == key {
			owner = cluster
			return true
		}
		return false
	})
	return owner, owner != ""
}
