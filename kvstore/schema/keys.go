package schema

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultRoot is the root of every key Cilium writes.
const DefaultRoot = "cilium"

// MaxIdentity is the largest numeric identity stored in the kvstore: Cilium
// identities are 24 bits wide (cluster ID in the top bits).
const MaxIdentity = 1<<24 - 1

// maxSegmentLen bounds a key segment: the longest Kubernetes object name
// (a DNS subdomain) is 253 bytes.
const maxSegmentLen = 253

// Paths builds and parses etcd keys below Root. The zero value uses
// DefaultRoot. Root must not start or end with '/'.
//
// Paths names a cluster's own state ("<root>/state/..."); Cache(cluster)
// names instead a cache of that cluster's state kept in another etcd, the
// layout of Cilium's KVStoreMesh (see Cache).
type Paths struct {
	Root string
	// cache is the cluster whose cached state these paths name ("" for
	// the state layout).
	cache string
}

// Cache returns the paths of the cache of cluster's state, as Cilium's
// KVStoreMesh writes it and as a cluster config with the "cached"
// capability announces it: every state prefix moves from "<root>/state" to
// "<root>/cache", and the kinds whose state keys do not name the cluster
// gain it:
//
//	<root>/cache/nodes/v1/<cluster>/<node>
//	<root>/cache/services/v1/<cluster>/<ns>/<name>
//	<root>/cache/identities/v1/<cluster>/id/<id>
//	<root>/cache/ip/v1/<cluster>/<ip>[/<len>]
//
// The synced canaries name the cached prefixes, e.g.
// "<root>/synced/<cluster>/<root>/cache/nodes/v1".
func (p Paths) Cache(cluster string) Paths {
	p.cache = cluster
	return p
}

// Cached returns the cluster whose cache p names, or "" for the state layout.
func (p Paths) Cached() string { return p.cache }

// data returns "<root>/state" or "<root>/cache".
func (p Paths) data() string {
	if p.cache != "" {
		return p.root() + "/cache"
	}
	return p.root() + "/state"
}

// scope returns "/<cluster>" in the cache layout and "" in the state layout.
func (p Paths) scope() string {
	if p.cache != "" {
		return "/" + p.cache
	}
	return ""
}

// DefaultPaths returns the paths Cilium uses (Root "cilium").
func DefaultPaths() Paths { return Paths{Root: DefaultRoot} }

func (p Paths) root() string {
	if p.Root == "" {
		return DefaultRoot
	}
	return p.Root
}

// ClusterConfigPrefix returns "<root>/cluster-config/".
func (p Paths) ClusterConfigPrefix() string { return p.root() + "/cluster-config/" }

// ClusterConfig returns "<root>/cluster-config/<cluster>".
func (p Paths) ClusterConfig(cluster string) string { return p.ClusterConfigPrefix() + cluster }

// StatePrefix returns "<root>/state/" ("<root>/cache/" for a cache), the
// parent of every state prefix.
func (p Paths) StatePrefix() string { return p.data() + "/" }

// NodesPrefix returns "<root>/state/nodes/v1".
func (p Paths) NodesPrefix() string { return p.data() + "/nodes/v1" }

// ClusterNodesPrefix returns "<root>/state/nodes/v1/<cluster>/".
func (p Paths) ClusterNodesPrefix(cluster string) string {
	return p.NodesPrefix() + "/" + cluster + "/"
}

// Node returns "<root>/state/nodes/v1/<cluster>/<node>".
func (p Paths) Node(cluster, node string) string { return p.ClusterNodesPrefix(cluster) + node }

// IdentitiesPrefix returns "<root>/state/identities/v1".
func (p Paths) IdentitiesPrefix() string { return p.data() + "/identities/v1" }

// IdentityIDPrefix returns "<root>/state/identities/v1/id/" (a cache:
// "<root>/cache/identities/v1/<cluster>/id/").
func (p Paths) IdentityIDPrefix() string { return p.IdentitiesPrefix() + p.scope() + "/id/" }

// Identity returns "<root>/state/identities/v1/id/<id>".
func (p Paths) Identity(id uint32) string {
	return p.IdentityIDPrefix() + strconv.FormatUint(uint64(id), 10)
}

// IPPrefix returns "<root>/state/ip/v1".
func (p Paths) IPPrefix() string { return p.data() + "/ip/v1" }

// IPDefaultPrefix returns "<root>/state/ip/v1/default/", the address space
// of every ip entry (a cache: "<root>/cache/ip/v1/<cluster>/").
func (p Paths) IPDefaultPrefix() string {
	if p.cache != "" {
		return p.IPPrefix() + p.scope() + "/"
	}
	return p.IPPrefix() + "/default/"
}

// IP returns "<root>/state/ip/v1/default/<ip>", the key of a host entry. The
// address is unmapped and its zone dropped, as Cilium writes it.
func (p Paths) IP(ip netip.Addr) string {
	return p.IPDefaultPrefix() + ip.Unmap().WithZone("").String()
}

// IPCIDR returns "<root>/state/ip/v1/default/<ip>/<len>", the key of a
// prefix entry (an IPEntry with a Mask).
func (p Paths) IPCIDR(prefix netip.Prefix) string {
	addr, bits := prefix.Addr(), prefix.Bits()
	if addr.Is4In6() && bits >= 96 {
		addr, bits = addr.Unmap(), bits-96
	}
	return p.IPDefaultPrefix() + addr.String() + "/" + strconv.Itoa(bits)
}

// ServicesPrefix returns "<root>/state/services/v1".
func (p Paths) ServicesPrefix() string { return p.data() + "/services/v1" }

// ClusterServicesPrefix returns "<root>/state/services/v1/<cluster>/".
func (p Paths) ClusterServicesPrefix(cluster string) string {
	return p.ServicesPrefix() + "/" + cluster + "/"
}

// Service returns "<root>/state/services/v1/<cluster>/<ns>/<name>".
func (p Paths) Service(cluster, ns, name string) string {
	return p.ClusterServicesPrefix(cluster) + ns + "/" + name
}

// CacheRoot returns "<root>/cache/", the parent of every cluster's cache.
func (p Paths) CacheRoot() string { return p.root() + "/cache/" }

// CacheStatusPrefix returns "<root>/.clustermesh/cache-status/", where the
// cache of remote state publishes its connection to each peer
// (CachePeerState) for `clustermesh status`, which reads it as the admin.
// This project's key, outside Cilium's layout (Cilium's KVStoreMesh has
// none): neither the cache's readers nor the peers may read it.
func (p Paths) CacheStatusPrefix() string { return p.root() + "/.clustermesh/cache-status/" }

// CacheStatus returns "<root>/.clustermesh/cache-status/<cluster>".
func (p Paths) CacheStatus(cluster string) string { return p.CacheStatusPrefix() + cluster }

// SyncedRoot returns "<root>/synced/", the parent of every synced marker.
func (p Paths) SyncedRoot() string { return p.root() + "/synced/" }

// SyncedPrefix returns "<root>/synced/<cluster>/".
func (p Paths) SyncedPrefix(cluster string) string { return p.root() + "/synced/" + cluster + "/" }

// Synced returns "<root>/synced/<cluster>/<prefix>", the canary written once
// prefix (for example NodesPrefix()) has been fully synchronised, e.g.
// "cilium/synced/c1/cilium/state/nodes/v1".
func (p Paths) Synced(cluster, prefix string) string { return p.SyncedPrefix(cluster) + prefix }

// Heartbeat returns "<root>/.heartbeat".
func (p Paths) Heartbeat() string { return p.root() + "/.heartbeat" }

// ParseClusterConfigKey returns the cluster of "<root>/cluster-config/<cluster>".
func (p Paths) ParseClusterConfigKey(key string) (cluster string, err error) {
	segs, err := p.split(key, p.ClusterConfigPrefix(), "cluster")
	if err != nil {
		return "", err
	}
	return segs[0], nil
}

// ParseNodeKey returns the segments of "<root>/state/nodes/v1/<cluster>/<node>".
func (p Paths) ParseNodeKey(key string) (cluster, node string, err error) {
	segs, err := p.split(key, p.NodesPrefix()+"/", "cluster", "node")
	if err != nil {
		return "", "", err
	}
	return segs[0], segs[1], nil
}

// ParseServiceKey returns the segments of
// "<root>/state/services/v1/<cluster>/<ns>/<name>".
func (p Paths) ParseServiceKey(key string) (cluster, ns, name string, err error) {
	segs, err := p.split(key, p.ServicesPrefix()+"/", "cluster", "namespace", "name")
	if err != nil {
		return "", "", "", err
	}
	return segs[0], segs[1], segs[2], nil
}

// ParseIdentityKey returns the identity of "<root>/state/identities/v1/id/<id>":
// decimal, 1..MaxIdentity, without sign or leading zeros.
func (p Paths) ParseIdentityKey(key string) (uint32, error) {
	rest, ok := strings.CutPrefix(key, p.IdentityIDPrefix())
	if !ok {
		return 0, keyErrorf(key, "not under %q", p.IdentityIDPrefix())
	}
	id, err := parseIdentityID(rest)
	if err != nil {
		return 0, keyErrorf(key, "%v", err)
	}
	return id, nil
}

// ParseIPKey returns the address of a host entry key
// "<root>/state/ip/v1/default/<ip>". Prefix keys ("<ip>/<len>") are rejected;
// use ParseIPPrefixKey to accept both.
func (p Paths) ParseIPKey(key string) (netip.Addr, error) {
	prefix, isCIDR, err := p.parseIPKey(key)
	if err != nil {
		return netip.Addr{}, err
	}
	if isCIDR {
		return netip.Addr{}, keyErrorf(key, "names prefix %s, not a single address", prefix)
	}
	return prefix.Addr(), nil
}

// ParseIPPrefixKey returns the prefix of "<root>/state/ip/v1/default/<ip>/<len>",
// or the single-address prefix (/32 or /128) of a host entry key.
func (p Paths) ParseIPPrefixKey(key string) (netip.Prefix, error) {
	prefix, _, err := p.parseIPKey(key)
	return prefix, err
}

func (p Paths) parseIPKey(key string) (prefix netip.Prefix, isCIDR bool, err error) {
	rest, ok := strings.CutPrefix(key, p.IPDefaultPrefix())
	if !ok {
		return netip.Prefix{}, false, keyErrorf(key, "not under %q", p.IPDefaultPrefix())
	}
	addrText, bitsText, isCIDR := strings.Cut(rest, "/")
	addr, err := parseCanonicalAddr(addrText)
	if err != nil {
		return netip.Prefix{}, false, keyErrorf(key, "%v", err)
	}
	if !isCIDR {
		return netip.PrefixFrom(addr, addr.BitLen()), false, nil
	}
	bits, err := parseDecimal(bitsText, addr.BitLen())
	if err != nil {
		return netip.Prefix{}, false, keyErrorf(key, "prefix length %q %v", bitsText, err)
	}
	prefix = netip.PrefixFrom(addr, bits)
	if prefix.Masked().Addr() != addr {
		return netip.Prefix{}, false, keyErrorf(key, "prefix %s has host bits set (want %s)", prefix, prefix.Masked())
	}
	return prefix, true, nil
}

// split strips prefix from key and splits the rest into exactly len(names)
// valid segments.
func (p Paths) split(key, prefix string, names ...string) ([]string, error) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return nil, keyErrorf(key, "not under %q", prefix)
	}
	if n := strings.Count(rest, "/") + 1; n != len(names) {
		return nil, keyErrorf(key, "want %d segment(s) <%s> after %q, got %d",
			len(names), strings.Join(names, ">/<"), prefix, n)
	}
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		if err := checkSegment(s); err != nil {
			return nil, keyErrorf(key, "%s segment %q %v", names[i], s, err)
		}
	}
	return segs, nil
}

// checkSegment validates one key segment; the error completes a sentence
// starting with the segment's name.
func checkSegment(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("is empty")
	case s == "." || s == "..":
		return fmt.Errorf("is a relative path element")
	case len(s) > maxSegmentLen:
		return fmt.Errorf("is longer than %d bytes", maxSegmentLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return fmt.Errorf("contains whitespace or a control character")
		}
	}
	return nil
}

func parseIdentityID(s string) (uint32, error) {
	if s == "0" {
		return 0, fmt.Errorf("identity 0 is invalid")
	}
	n, err := parseDecimal(s, MaxIdentity)
	if err != nil {
		return 0, fmt.Errorf("identity %q %w", s, err)
	}
	return uint32(n), nil
}

// parseDecimal parses an unsigned decimal in 0..max with no sign, spaces or
// leading zeros.
func parseDecimal(s string, max int) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("is empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("is not an unsigned decimal number")
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("has a leading zero")
	}
	if len(s) > len(strconv.Itoa(max)) {
		return 0, fmt.Errorf("is out of range 0..%d", max)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > max {
		return 0, fmt.Errorf("is out of range 0..%d", max)
	}
	return n, nil
}

// parseCanonicalAddr accepts only the canonical text form of an address.
func parseCanonicalAddr(s string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	case addr.Zone() != "":
		return netip.Addr{}, fmt.Errorf("address %q has a zone", s)
	case addr.Is4In6():
		return netip.Addr{}, fmt.Errorf("address %q is IPv4-mapped; write it as %s", s, addr.Unmap())
	case addr.String() != s:
		return netip.Addr{}, fmt.Errorf("address %q is not in canonical form %q", s, addr.String())
	}
	return addr, nil
}

// ParseClusterConfigKey is DefaultPaths().ParseClusterConfigKey.
func ParseClusterConfigKey(key string) (string, error) {
	return DefaultPaths().ParseClusterConfigKey(key)
}

// ParseNodeKey is DefaultPaths().ParseNodeKey.
func ParseNodeKey(key string) (cluster, node string, err error) {
	return DefaultPaths().ParseNodeKey(key)
}

// ParseServiceKey is DefaultPaths().ParseServiceKey.
func ParseServiceKey(key string) (cluster, ns, name string, err error) {
	return DefaultPaths().ParseServiceKey(key)
}

// ParseIdentityKey is DefaultPaths().ParseIdentityKey.
func ParseIdentityKey(key string) (uint32, error) { return DefaultPaths().ParseIdentityKey(key) }

// ParseIPKey is DefaultPaths().ParseIPKey.
func ParseIPKey(key string) (netip.Addr, error) { return DefaultPaths().ParseIPKey(key) }

// ParseIPPrefixKey is DefaultPaths().ParseIPPrefixKey.
func ParseIPPrefixKey(key string) (netip.Prefix, error) {
	return DefaultPaths().ParseIPPrefixKey(key)
}
