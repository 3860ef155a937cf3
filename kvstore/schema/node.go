package schema

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Node address types, as Cilium writes them in NodeAddress.Type.
const (
	AddressInternalIP       = "InternalIP"
	AddressExternalIP       = "ExternalIP"
	AddressCiliumInternalIP = "CiliumInternalIP"
)

// Node is the value at "<root>/state/nodes/v1/<cluster>/<node>". Its JSON is
// that of Cilium's pkg/node/types.Node (plain Go field names, no tags).
type Node struct {
	Name                    string
	Cluster                 string
	IPAddresses             []NodeAddress
	IPv4AllocCIDR           *CIDR
	IPv4SecondaryAllocCIDRs []*CIDR
	IPv6AllocCIDR           *CIDR
	IPv6SecondaryAllocCIDRs []*CIDR
	IPv4HealthIP            net.IP
	IPv6HealthIP            net.IP
	IPv4IngressIP           net.IP
	IPv6IngressIP           net.IP
	ClusterID               uint32
	Source                  string
	EncryptionKey           uint8
	Labels                  map[string]string
	Annotations             map[string]string
	WireguardPubKey         string
	BootID                  string
}

// NodeAddress is one address of a node (Cilium's node types.Address).
type NodeAddress struct {
	Type string
	IP   net.IP
}

// CIDR is a pod CIDR. Its JSON is that of Cilium's cidr.CIDR, which embeds
// *net.IPNet: {"IP":"10.0.0.0","Mask":"////AA=="} (IP as text, mask as
// base64 of 4 or 16 bytes). A nil *CIDR encodes as null.
type CIDR struct {
	Prefix netip.Prefix
}

// NewCIDR returns the CIDR of p with its host bits cleared.
func NewCIDR(p netip.Prefix) *CIDR { return &CIDR{Prefix: p.Masked()} }

// ParseCIDR parses "10.0.0.0/24" or "fd00::/64"; host bits are cleared.
func ParseCIDR(s string) (*CIDR, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, fmt.Errorf("invalid CIDR %q: %w", s, err)
	}
	if p.Addr().Is4In6() {
		return nil, fmt.Errorf("invalid CIDR %q: IPv4-mapped IPv6 prefixes are not allowed", s)
	}
	return NewCIDR(p), nil
}

// String returns the prefix as "10.0.0.0/24".
func (c CIDR) String() string { return c.Prefix.String() }

type ipNetJSON struct {
	IP   net.IP
	Mask net.IPMask
}

// MarshalJSON writes the CIDR the way Cilium's cidr.CIDR encodes.
func (c CIDR) MarshalJSON() ([]byte, error) {
	p := c.Prefix
	if !p.IsValid() || p.Addr().Is4In6() {
		return nil, fmt.Errorf("cannot encode invalid CIDR %q", p)
	}
	p = p.Masked()
	return json.Marshal(ipNetJSON{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	})
}

// UnmarshalJSON reads {"IP":...,"Mask":...}; the mask must be a prefix
// mask of the IP's family and the IP must have no host bits set.
func (c *CIDR) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	rest := skipSpace(data)
	if len(rest) == 0 || rest[0] != '{' {
		return fmt.Errorf(`invalid CIDR %s: want an object {"IP":...,"Mask":...}`, abbreviate(data))
	}
	var raw ipNetJSON
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("invalid CIDR %s: %w", abbreviate(data), err)
	}
	p, err := prefixFromIPNet(raw.IP, raw.Mask)
	if err != nil {
		return fmt.Errorf("invalid CIDR %s: %w", abbreviate(data), err)
	}
	c.Prefix = p
	return nil
}

func prefixFromIPNet(ip net.IP, mask net.IPMask) (netip.Prefix, error) {
	if ip == nil {
		return netip.Prefix{}, errors.New("missing IP")
	}
	if mask == nil {
		return netip.Prefix{}, errors.New("missing Mask")
	}
	addr, ok := ipAddr(ip)
	if !ok {
		return netip.Prefix{}, errors.New("invalid IP")
	}
	if want := addr.BitLen() / 8; len(mask) != want {
		return netip.Prefix{}, fmt.Errorf("mask has %d bytes, want %d for %s", len(mask), want, addr)
	}
	ones, bits := mask.Size()
	if bits == 0 {
		return netip.Prefix{}, errors.New("mask is not a prefix mask")
	}
	p := netip.PrefixFrom(addr, ones)
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("address %s has bits set outside the /%d mask", addr, ones)
	}
	return p, nil
}

func abbreviate(data []byte) string {
	const max = 64
	if len(data) > max {
		return fmt.Sprintf("%q...", data[:max])
	}
	return fmt.Sprintf("%q", data)
}

// Marshal encodes the node as Cilium does.
func (n Node) Marshal() ([]byte, error) { return json.Marshal(n) }

// PodCIDRs returns the node's pod CIDRs in Cilium's order: IPv4 primary,
// IPv6 primary, IPv4 secondaries, IPv6 secondaries. Nil entries are skipped.
func (n Node) PodCIDRs() []netip.Prefix {
	var out []netip.Prefix
	add := func(cs ...*CIDR) {
		for _, c := range cs {
			if c != nil && c.Prefix.IsValid() {
				out = append(out, c.Prefix)
			}
		}
	}
	add(n.IPv4AllocCIDR, n.IPv6AllocCIDR)
	add(n.IPv4SecondaryAllocCIDRs...)
	add(n.IPv6SecondaryAllocCIDRs...)
	return out
}

// Address returns the first address of the given type and family, unmapped,
// or the zero Addr when there is none.
func (n Node) Address(typ string, ipv6 bool) netip.Addr {
	for _, a := range n.IPAddresses {
		addr, ok := ipAddr(a.IP)
		if ok && a.Type == typ && addr.Is6() == ipv6 {
			return addr
		}
	}
	return netip.Addr{}
}

// InternalIP returns the node's first InternalIP of the given family, or the
// zero Addr.
func (n Node) InternalIP(ipv6 bool) netip.Addr { return n.Address(AddressInternalIP, ipv6) }

// CiliumInternalIP returns the node's first CiliumInternalIP (the cilium_host
// address) of the given family, or the zero Addr.
func (n Node) CiliumInternalIP(ipv6 bool) netip.Addr {
	return n.Address(AddressCiliumInternalIP, ipv6)
}

// DecodeNode is DefaultPaths().DecodeNode.
func DecodeNode(key string, data []byte) (Node, error) { return DefaultPaths().DecodeNode(key, data) }

// DecodeNode decodes and validates the node stored at key: Name and Cluster
// must equal the key's segments, addresses and CIDRs must be valid and of
// the family their field names, and WireguardPubKey, when set, must be the
// base64 of a 32-byte key.
func (p Paths) DecodeNode(key string, data []byte) (Node, error) {
	cluster, name, err := p.ParseNodeKey(key)
	if err != nil {
		return Node{}, err
	}
	var n Node
	if err := decodeObject(data, &n); err != nil {
		return Node{}, &DecodeError{Key: key, Err: err}
	}
	if err := n.validate(cluster, name); err != nil {
		return Node{}, &DecodeError{Key: key, Err: err}
	}
	return n, nil
}

func (n *Node) validate(cluster, name string) error {
	switch {
	case n.Name == "":
		return errors.New("node name is empty")
	case n.Name != name:
		return fmt.Errorf("node name %q does not match the key's node %q", n.Name, name)
	case n.Cluster != cluster:
		return fmt.Errorf("node cluster %q does not match the key's cluster %q", n.Cluster, cluster)
	}
	for i, a := range n.IPAddresses {
		if a.Type == "" {
			return fmt.Errorf("node address %d has no Type", i)
		}
		if _, ok := ipAddr(a.IP); !ok {
			return fmt.Errorf("node address %d (%s) has no valid IP", i, a.Type)
		}
	}
	if err := checkCIDR("node IPv4AllocCIDR", n.IPv4AllocCIDR, false); err != nil {
		return err
	}
	if err := checkCIDR("node IPv6AllocCIDR", n.IPv6AllocCIDR, true); err != nil {
		return err
	}
	for i, c := range n.IPv4SecondaryAllocCIDRs {
		if err := checkCIDR(fmt.Sprintf("node IPv4SecondaryAllocCIDRs[%d]", i), c, false); err != nil {
			return err
		}
		if c == nil {
			return fmt.Errorf("node IPv4SecondaryAllocCIDRs[%d] is null", i)
		}
	}
	for i, c := range n.IPv6SecondaryAllocCIDRs {
		if err := checkCIDR(fmt.Sprintf("node IPv6SecondaryAllocCIDRs[%d]", i), c, true); err != nil {
			return err
		}
		if c == nil {
			return fmt.Errorf("node IPv6SecondaryAllocCIDRs[%d] is null", i)
		}
	}
	for _, f := range []struct {
		name string
		ip   net.IP
		v6   bool
	}{
		{"node IPv4HealthIP", n.IPv4HealthIP, false},
		{"node IPv6HealthIP", n.IPv6HealthIP, true},
		{"node IPv4IngressIP", n.IPv4IngressIP, false},
		{"node IPv6IngressIP", n.IPv6IngressIP, true},
	} {
		if err := checkOptionalIP(f.name, f.ip, f.v6); err != nil {
			return err
		}
	}
	if n.WireguardPubKey != "" {
		k, err := base64.StdEncoding.DecodeString(n.WireguardPubKey)
		if err != nil || len(k) != 32 {
			return fmt.Errorf("node WireguardPubKey %q is not a base64-encoded 32-byte key", n.WireguardPubKey)
		}
	}
	return nil
}

// checkCIDR checks that c, when set, is a valid prefix of the given family.
func checkCIDR(field string, c *CIDR, ipv6 bool) error {
	switch {
	case c == nil:
		return nil
	case !c.Prefix.IsValid() || c.Prefix.Addr().Is4In6():
		return fmt.Errorf("%s is not a valid CIDR", field)
	case c.Prefix.Addr().Is6() != ipv6:
		return fmt.Errorf("%s %s has the wrong address family", field, c.Prefix)
	}
	return nil
}
