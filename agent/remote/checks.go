package remote

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/clustermesh/clustermesh/identity"
)

// More reasons for rejecting remote data (see validate.go for the rest).
const (
	ReasonBadPodCIDR      = "node pod CIDR not the peer's"
	ReasonBadNodeAddress  = "node address not the peer's"
	ReasonBadWireGuardKey = "node WireGuard key not the peer's"
	ReasonForeignLabel    = "identity label of a source a peer may not use"
	ReasonBadHostIP       = "ip entry's host not one of the peer's nodes"
	ReasonBadName         = "not a Kubernetes name"
	ReasonBadBackend      = "service backend outside the peer's pod CIDRs"
)

// special are ranges no pod CIDR, node or pod address of a peer may touch:
// the unspecified and "this network" range, loopback, link-local,
// multicast and the reserved class E (and their IPv6 equivalents).
var special = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"), netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/128"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"), netip.MustParsePrefix("::ffff:0:0/96"),
}

// minPodCIDRBits bounds how wide a pod CIDR a node may claim: no peer node
// has a pod CIDR wider than a /8 (IPv4) or a /32 (IPv6).
func minPodCIDRBits(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 8
	}
	return 32
}

func specialRange(p netip.Prefix) (netip.Prefix, bool) {
	for _, s := range special {
		if s.Overlaps(p) {
			return s, true
		}
	}
	return netip.Prefix{}, false
}

// checkPodCIDR checks a pod CIDR a node of the peer announces against the
// peer's recorded CIDRs, special ranges and the rest of the mesh.
func (v *validator) checkPodCIDR(c netip.Prefix) error {
	if c != c.Masked() {
		return fmt.Errorf("pod CIDR %v has host bits set", c)
	}
	if c.Bits() < minPodCIDRBits(c) {
		return fmt.Errorf("pod CIDR %v is wider than /%d", c, minPodCIDRBits(c))
	}
	if s, ok := specialRange(c); ok {
		return fmt.Errorf("pod CIDR %v overlaps the special range %v", c, s)
	}
	if len(v.trust.PodCIDRs) > 0 {
		inside := false
		for _, t := range v.trust.PodCIDRs {
			if t.Bits() <= c.Bits() && t.Contains(c.Addr()) {
				inside = true
				break
			}
		}
		if !inside {
			return fmt.Errorf("pod CIDR %v is outside the pod CIDRs %v that `clustermesh connect` recorded for %s", c, v.trust.PodCIDRs, v.peer)
		}
	}
	if v.claims != nil {
		if owner, ok := v.claims.PodCIDROwner(v.peer, c); ok {
			return fmt.Errorf("pod CIDR %v overlaps the pod CIDRs of cluster %s", c, owner)
		}
	}
	return nil
}

// checkNodeAddress checks an address of one of the peer's nodes.
func (v *validator) checkNodeAddress(a netip.Addr) error {
	if !a.IsValid() {
		return fmt.Errorf("invalid address")
	}
	a = a.Unmap()
	if s, ok := specialRange(netip.PrefixFrom(a, a.BitLen())); ok {
		return fmt.Errorf("address %v is in the special range %v", a, s)
	}
	if v.claims != nil {
		if owner, ok := v.claims.NodeIPOwner(v.peer, a); ok {
			return fmt.Errorf("address %v is a node address of cluster %s", a, owner)
		}
		if owner, ok := v.claims.PodCIDROwner(v.peer, netip.PrefixFrom(a, a.BitLen())); ok {
			return fmt.Errorf("address %v is in the pod CIDRs of cluster %s", a, owner)
		}
	}
	return nil
}

// zeroKey is the base64 of 32 zero bytes: no WireGuard peer has it.
const zeroKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

// checkLabels accepts only the labels an exporter writes: Kubernetes
// labels (source k8s), the peer's cluster label among them.
func (v *validator) checkLabels(id identity.NumericIdentity, labels identity.Labels) (string, error) {
	cluster := false
	for l := range labels.All() {
		if l.Source != identity.SourceK8s {
			return ReasonForeignLabel, fmt.Errorf("identity %d has the label %s: a peer's identities carry only %s: labels", id, truncate(l.String()), identity.SourceK8s)
		}
		if l.Key == identity.ClusterLabelKey {
			if l.Value != v.peer {
				return ReasonNoClusterLabel, fmt.Errorf("identity %d has %s=%s, the peer is %s", id, identity.ClusterLabelKey, truncate(l.Value), v.peer)
			}
			cluster = true
		}
	}
	if !cluster {
		return ReasonNoClusterLabel, fmt.Errorf("identity %d lacks %s:%s=%s", id, identity.SourceK8s, identity.ClusterLabelKey, v.peer)
	}
	return "", nil
}

// checkNames checks the Kubernetes names of an ip entry or a service:
// namespace a DNS label, names DNS subdomains. Names are printed in logs
// and terminals: nothing else may reach them.
func checkNames(namespace string, names ...string) error {
	if namespace != "" {
		if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
			return fmt.Errorf("namespace %q: %s", truncate(namespace), errs[0])
		}
	}
	for _, n := range names {
		if n == "" {
			continue
		}
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			return fmt.Errorf("name %q: %s", truncate(n), errs[0])
		}
	}
	return nil
}

// truncate keeps what a log line shows of a peer's string short and free
// of control characters.
func truncate(s string) string { return truncateN(s, 64) }

// truncateN is truncate with a limit of n bytes.
func truncateN(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
