package bpf

import (
	"cmp"
	"fmt"
	"slices"
)

// IP protocol numbers used by the policy.
const (
	ProtoICMP uint8 = 1
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

// PolicyRule allows (or with Deny, denies) traffic of an endpoint with peers
// of one identity.
type PolicyRule struct {
	// Identity of the peer; 0 matches any identity.
	Identity uint32
	// Ingress rules apply to traffic towards the endpoint, the others to
	// traffic leaving it.
	Ingress bool
	// Proto is the IP protocol; 0 matches any. A rule with a Port and no
	// Proto applies to TCP, UDP and SCTP (as in Cilium).
	Proto uint8
	// Port is the destination port; 0 matches any. With EndPort > Port the
	// rule covers the range Port..EndPort (inclusive).
	Port, EndPort uint16
	// Deny rules win over allow rules that match the same traffic.
	Deny bool
	// ByAddress: Identity is a CIDR identity (see CIDRIdentities) and the
	// rule also matches peers by address: a flow whose peer address lies
	// in a prefix of that identity matches, whatever the peer's own
	// identity (a pod inside a Kubernetes NetworkPolicy ipBlock). Only for
	// allow rules of a non-zero identity.
	ByAddress bool
}

// IdentityByAddress marks the policy entries of ByAddress rules: they are
// keyed by the CIDR identity with this bit set (IDENTITY_BY_ADDR). No
// identity has it.
const IdentityByAddress uint32 = 1 << 31

// PolicyEntry is one entry of the policy map as the datapath sees it: a rule
// expanded into a protocol and an aligned block of ports.
type PolicyEntry struct {
	Ingress  bool
	Identity uint32
	// Proto 0 is any protocol (then Port and PortBits are 0).
	Proto uint8
	// Port is the first port of the block of 2^(16-PortBits) ports;
	// PortBits 0 is any port, 16 exactly Port.
	Port     uint16
	PortBits uint8
	Deny     bool
	// Packets counts the new flows this entry decided (List only).
	Packets uint64
}

// entryKey identifies a PolicyEntry within one endpoint.
type entryKey struct {
	ingress  bool
	identity uint32
	proto    uint8
	port     uint16
	portBits uint8
}

func (e PolicyEntry) key() entryKey {
	return entryKey{e.Ingress, e.Identity, e.Proto, e.Port, e.PortBits}
}

// portBlocks splits lo..hi (inclusive) into the smallest list of aligned
// power-of-two blocks, as (first port, prefix bits). At most 30 blocks.
func portBlocks(lo, hi uint16) [][2]uint32 {
	var out [][2]uint32
	l, h := uint32(lo), uint32(hi)
	for l <= h {
		size := uint32(1 << 16)
		if l != 0 {
			size = l & -l // largest power of two l is aligned to
		}
		for l+size-1 > h {
			size >>= 1
		}
		bits := uint32(16)
		for s := size; s > 1; s >>= 1 {
			bits--
		}
		out = append(out, [2]uint32{l, bits})
		l += size
	}
	return out
}

// expandRules turns rules into policy entries: Port ranges become aligned
// power-of-two blocks (the datapath matches a port against a block by its
// prefix), a Port without Proto becomes TCP, UDP and SCTP entries, equal
// entries merge (deny wins), and every entry covered by a less specific deny
// entry of the same identity becomes a deny, so that the datapath's "most
// specific entry wins" never hides a deny.
func expandRules(rules []PolicyRule) ([]PolicyEntry, error) {
	set := map[entryKey]bool{}
	for i, r := range rules {
		if err := validateRule(r); err != nil {
			return nil, fmt.Errorf("rule %d %+v: %w", i, r, err)
		}
		protos := []uint8{r.Proto}
		if r.Proto == 0 && r.Port != 0 {
			protos = []uint8{ProtoTCP, ProtoUDP, ProtoSCTP}
		}
		ids := []uint32{r.Identity}
		if r.ByAddress {
			ids = append(ids, r.Identity|IdentityByAddress)
		}
		for _, id := range ids {
			for _, proto := range protos {
				k := entryKey{ingress: r.Ingress, identity: id, proto: proto}
				if r.Port == 0 {
					set[k] = set[k] || r.Deny
					continue
				}
				end := max(r.EndPort, r.Port)
				for _, b := range portBlocks(r.Port, end) {
					k.port, k.portBits = uint16(b[0]), uint8(b[1])
					set[k] = set[k] || r.Deny
				}
			}
		}
	}
	out := make([]PolicyEntry, 0, len(set))
	for k, deny := range set {
		if !deny {
			deny = coveredByDeny(set, k)
		}
		out = append(out, PolicyEntry{Ingress: k.ingress, Identity: k.identity, Proto: k.proto, Port: k.port, PortBits: k.portBits, Deny: deny})
	}
	slices.SortFunc(out, comparePolicyEntries)
	return out, nil
}

func validateRule(r PolicyRule) error {
	if r.Identity&IdentityByAddress != 0 {
		return fmt.Errorf("%w: identity %d has bit 31 set (reserved for rules by address)", ErrInvalidRule, r.Identity)
	}
	if r.ByAddress && (r.Deny || r.Identity == 0) {
		return fmt.Errorf("%w: a rule by address is an allow rule of a CIDR identity", ErrInvalidRule)
	}
	if r.Port == 0 && r.EndPort != 0 {
		return fmt.Errorf("%w: EndPort without Port", ErrInvalidRule)
	}
	if r.EndPort != 0 && r.EndPort < r.Port {
		return fmt.Errorf("%w: EndPort %d < Port %d", ErrInvalidRule, r.EndPort, r.Port)
	}
	if r.Port != 0 && r.Proto != 0 && r.Proto != ProtoTCP && r.Proto != ProtoUDP && r.Proto != ProtoSCTP {
		return fmt.Errorf("%w: protocol %d has no ports", ErrInvalidRule, r.Proto)
	}
	return nil
}

// coveredByDeny reports whether a less specific entry of k's identity and
// direction is a deny.
func coveredByDeny(set map[entryKey]bool, k entryKey) bool {
	if k.proto == 0 {
		return false
	}
	if set[entryKey{ingress: k.ingress, identity: k.identity}] {
		return true
	}
	for bits := uint8(0); bits < k.portBits; bits++ {
		mask := uint16(0xffff) << (16 - bits)
		if bits == 0 {
			mask = 0
		}
		if set[entryKey{k.ingress, k.identity, k.proto, k.port & mask, bits}] {
			return true
		}
	}
	return false
}

func comparePolicyEntries(a, b PolicyEntry) int {
	if a.Ingress != b.Ingress {
		if a.Ingress {
			return -1
		}
		return 1
	}
	return cmp.Or(
		cmp.Compare(a.Identity, b.Identity),
		cmp.Compare(a.Proto, b.Proto),
		cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.PortBits, b.PortBits),
	)
}
