package bpf

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// IPCacheValue is the value of the ipcache map for a prefix: what the
// datapath knows about the endpoints in it. In the map it is laid out as
// rawIPCacheValue.
type IPCacheValue struct {
	// Identity is the security identity of the prefix.
	Identity uint32
	// HostIP is the address (IPv4 or IPv6) of the node the endpoints run
	// on (the tunnel endpoint); the zero Addr for none.
	HostIP netip.Addr
	// Flags are free for the caller; the datapath does not interpret them.
	Flags uint8
}

// ipcacheKey mirrors struct ipcache_key: prefixlen covers family and pad
// (32 bits) and then the address.
type ipcacheKey struct {
	Prefixlen uint32
	Family    uint8
	Pad       [3]uint8
	Addr      [16]byte
}

// rawIPCacheValue mirrors struct ipcache_value: an IPCacheValue as the map
// stores it.
type rawIPCacheValue struct {
	Identity   uint32
	Flags      uint8
	HostFamily uint8
	Pad        [2]uint8
	HostIP     [16]byte
}

// rawValue lays out e.
func rawValue(e IPCacheValue) rawIPCacheValue {
	v := rawIPCacheValue{Identity: e.Identity, Flags: e.Flags}
	switch h := e.HostIP.Unmap(); {
	case h.Is4():
		v.HostFamily = familyIPv4
		a := h.As4()
		copy(v.HostIP[:], a[:])
	case h.Is6():
		v.HostFamily, v.HostIP = familyIPv6, h.As16()
	}
	return v
}

// value decodes v.
func (v rawIPCacheValue) value() IPCacheValue {
	e := IPCacheValue{Identity: v.Identity, Flags: v.Flags}
	switch v.HostFamily {
	case familyIPv4:
		e.HostIP = netip.AddrFrom4([4]byte(v.HostIP[:4]))
	case familyIPv6:
		e.HostIP = netip.AddrFrom16(v.HostIP)
	}
	return e
}

const (
	familyIPv4 = 4
	familyIPv6 = 6
)

// IPCache maps prefixes (IPv4 and IPv6) to identities; a packet's peer is
// looked up by longest prefix match. Addresses not covered are the world
// identity (2). Single addresses (/32, /128) are kept in a hash map (hosts),
// whose cost does not grow with its size, the other prefixes in an LPM
// trie (m); the datapath tries the hash first.
type IPCache struct {
	m, hosts *ebpf.Map
}

// mapOf returns the map that holds p (masked, canonical).
func (c *IPCache) mapOf(p netip.Prefix) *ebpf.Map {
	if p.Bits() == p.Addr().BitLen() {
		return c.hosts
	}
	return c.m
}

// adoptHosts moves the single addresses an older version kept in the trie
// into the hash map (an entry already in the hash wins), so that each key
// is in one map.
func (c *IPCache) adoptHosts() error {
	var (
		k     ipcacheKey
		v     rawIPCacheValue
		moved []ipcacheKey
	)
	it := c.m.Iterate()
	for it.Next(&k, &v) {
		if p := k.prefix(); p.Bits() == p.Addr().BitLen() {
			if err := c.hosts.Update(&k, &v, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
				return fmt.Errorf("move ipcache entry %v to the hosts map: %w", p, err)
			}
			moved = append(moved, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read the ipcache trie: %w", err)
	}
	for i := range moved {
		if err := c.m.Delete(&moved[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("move ipcache entry %v to the hosts map: %w", moved[i].prefix(), err)
		}
	}
	return nil
}

func ipcacheKeyOf(p netip.Prefix) (ipcacheKey, netip.Prefix, error) {
	if !p.IsValid() {
		return ipcacheKey{}, p, fmt.Errorf("prefix %v: %w", p, ErrInvalidAddress)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	p = p.Masked()
	var k ipcacheKey
	k.Prefixlen = 32 + uint32(p.Bits())
	if p.Addr().Is4() {
		k.Family = familyIPv4
		a := p.Addr().As4()
		copy(k.Addr[:], a[:])
	} else {
		k.Family = familyIPv6
		k.Addr = p.Addr().As16()
	}
	return k, p, nil
}

func (k ipcacheKey) prefix() netip.Prefix {
	bits := int(k.Prefixlen) - 32
	if k.Family == familyIPv4 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(k.Addr[:4])), bits)
	}
	return netip.PrefixFrom(netip.AddrFrom16(k.Addr), bits)
}

// Update sets the entry of prefix p (normalized with Masked).
func (c *IPCache) Update(p netip.Prefix, e IPCacheValue) error {
	k, p, err := ipcacheKeyOf(p)
	if err != nil {
		return fmt.Errorf("ipcache update: %w", err)
	}
	if e.HostIP.Zone() != "" {
		return fmt.Errorf("ipcache update %v: host IP %v: a node's address has no zone: %w", p, e.HostIP, ErrInvalidAddress)
	}
	v := rawValue(e)
	if err := c.mapOf(p).Update(&k, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("ipcache update %v: %w", p, err)
	}
	return nil
}

// Capacity returns how many single addresses the ipcache can hold (the
// prefixes' trie has as many places).
func (c *IPCache) Capacity() int { return int(c.hosts.MaxEntries()) }

// Delete removes prefix p; an absent prefix is not an error.
func (c *IPCache) Delete(p netip.Prefix) error {
	k, p, err := ipcacheKeyOf(p)
	if err != nil {
		return fmt.Errorf("ipcache delete: %w", err)
	}
	if err := c.mapOf(p).Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("ipcache delete %v: %w", p, err)
	}
	return nil
}

// List returns every entry in the kernel.
func (c *IPCache) List() (map[netip.Prefix]IPCacheValue, error) {
	out := map[netip.Prefix]IPCacheValue{}
	for _, m := range []*ebpf.Map{c.m, c.hosts} {
		var (
			k ipcacheKey
			v rawIPCacheValue
		)
		it := m.Iterate()
		for it.Next(&k, &v) {
			out[k.prefix()] = v.value()
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("ipcache list: %w", err)
		}
	}
	return out, nil
}

// CIDRIdentities maps the CIDR prefixes of the policies to their CIDR
// identities, for rules that select peers by address (PolicyRule.ByAddress):
// the datapath looks a peer's address up by longest prefix match when no
// rule of the peer's own identity allows a flow.
type CIDRIdentities struct {
	m *ebpf.Map
}

// Update sets the identity of prefix p.
func (c *CIDRIdentities) Update(p netip.Prefix, id uint32) error {
	k, p, err := ipcacheKeyOf(p)
	if err != nil {
		return fmt.Errorf("cidr identity update: %w", err)
	}
	if err := c.m.Update(&k, &id, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("cidr identity update %v: %w", p, err)
	}
	return nil
}

// Delete removes prefix p; an absent prefix is not an error.
func (c *CIDRIdentities) Delete(p netip.Prefix) error {
	k, p, err := ipcacheKeyOf(p)
	if err != nil {
		return fmt.Errorf("cidr identity delete: %w", err)
	}
	if err := c.m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("cidr identity delete %v: %w", p, err)
	}
	return nil
}

// List returns every prefix and its identity.
func (c *CIDRIdentities) List() (map[netip.Prefix]uint32, error) {
	out := map[netip.Prefix]uint32{}
	var (
		k  ipcacheKey
		id uint32
	)
	it := c.m.Iterate()
	for it.Next(&k, &id) {
		out[k.prefix()] = id
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("cidr identity list: %w", err)
	}
	return out, nil
}
