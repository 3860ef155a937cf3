package remote

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Reasons for rejecting remote data.
const (
	ReasonMalformed       = "malformed"
	ReasonForeignCluster  = "written under another cluster's name"
	ReasonWrongClusterID  = "wrong cluster ID"
	ReasonOutsideRange    = "identity outside the peer's range"
	ReasonReserved        = "reserved identity"
	ReasonNoClusterLabel  = "identity without the peer's cluster label"
	ReasonOutsideNodeCIDR = "ip outside the peer's pod CIDRs"
)

// validator checks one peer's data and forwards what passes to the sink.
// Each kind's methods are called from that kind's goroutine; mu guards the
// state shared between kinds, and is held while the sink is told about ip
// entries and services, so that a re-check after a node change and a
// delete of the same key reach the sink in the order they happened.
type validator struct {
	peer   string
	id     identity.ClusterID
	layout identity.Layout
	paths  schema.Paths
	// prev holds the stopped watch stores of the last connection, whose
	// keys the next connection's stores adopt; owned by the Cluster's
	// run goroutine.
	prev   map[Kind]*kvstore.WatchStore
	sink   Sink
	rej    *rejections
	trust  Trust
	claims Claims

	mu        sync.Mutex
	nodes     map[string]nodeInfo     // accepted nodes by name
	cidrIndex map[netip.Prefix]string // pod CIDR of an accepted node → the node
	// cidrBuckets holds the pod CIDRs of cidrIndex no wider than a
	// re-check bucket (a /24 or a /64, bucketBits) by their bucket, so
	// that a pod CIDR's overlap with narrower ones is a lookup.
	cidrBuckets map[netip.Prefix]map[netip.Prefix]struct{}
	keyIndex    map[string]string // WireGuard key of an accepted node → the node
	ipIndex
	services map[string]svcRec            // accepted and quarantined services by key
	ports    sharedPorts                  // the port configurations of services, shared
	known    map[Kind]map[string]struct{} // accepted keys of nodes and identities, without their prefix
	// idKnown holds the accepted identities whose key (without its
	// prefix) is their number as strconv writes it, nearly all of them,
	// by that number instead of in known: 4 bytes instead of a string.
	idKnown map[uint32]struct{}
	// idPrefix and nodePrefix are what the keys of known lack.
	idPrefix, nodePrefix string
}

// nodeInfo is what ip entries and services are checked against.
type nodeInfo struct {
	cidrs []netip.Prefix
	addrs []netip.Addr
	key   string // WireGuard public key
}

func newValidator(peer string, id identity.ClusterID, layout identity.Layout, paths schema.Paths, sink Sink, rej *rejections) *validator {
	v := &validator{peer: peer, id: id, layout: layout, paths: paths, sink: sink, rej: rej,
		nodes: map[string]nodeInfo{}, cidrIndex: map[netip.Prefix]string{}, cidrBuckets: map[netip.Prefix]map[netip.Prefix]struct{}{}, keyIndex: map[string]string{}, ipIndex: newIPIndex(), services: map[string]svcRec{}, known: map[Kind]map[string]struct{}{}, idKnown: map[uint32]struct{}{}}
	for _, k := range Kinds {
		v.known[k] = map[string]struct{}{}
	}
	v.idPrefix, v.nodePrefix = paths.IdentityIDPrefix(), paths.ClusterNodesPrefix(peer)
	return v
}

// accepted records (or forgets) an accepted key and reports whether it was
// known before.
//
// A key is kept without its kind's prefix, copied: not the whole key the
// watch store allocated (an identity's "<root>/state/identities/v1/id/"
// is 30 bytes of each).
func (v *validator) accepted(kind Kind, key string, ok bool) bool {
	rel := key
	switch kind {
	case KindIdentities:
		rel = strings.TrimPrefix(key, v.idPrefix)
	case KindNodes:
		rel = strings.TrimPrefix(key, v.nodePrefix)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if n, isNum := canonicalNumber(rel); isNum && kind == KindIdentities {
		_, had := v.idKnown[n]
		if ok {
			v.idKnown[n] = struct{}{}
		} else {
			delete(v.idKnown, n)
		}
		return had
	}
	_, had := v.known[kind][rel]
	switch {
	case ok && !had:
		v.known[kind][strings.Clone(rel)] = struct{}{}
	case !ok:
		delete(v.known[kind], rel)
	}
	return had
}

// canonicalNumber returns the number rel spells, if rel is that number
// as strconv writes it (so that the number gives rel back).
func canonicalNumber(rel string) (uint32, bool) {
	n, err := strconv.ParseUint(rel, 10, 32)
	if err != nil {
		return 0, false
	}
	var buf [10]byte
	return uint32(n), string(strconv.AppendUint(buf[:0], n, 10)) == rel
}

func (v *validator) entries(kind Kind) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch kind {
	case KindIPs:
		return v.ips.len()
	case KindServices:
		return len(v.services)
	case KindIdentities:
		return len(v.known[kind]) + len(v.idKnown)
	}
	return len(v.known[kind])
}

// Nodes.

func (v *validator) upsertNode(key string, value []byte) {
	cluster, name, err := v.paths.ParseNodeKey(key)
	switch {
	case err != nil:
		v.rej.reject(KindNodes, ReasonMalformed, key, err.Error())
		return
	case cluster != v.peer:
		v.rej.reject(KindNodes, ReasonForeignCluster, key, "cluster "+truncate(cluster))
		return
	}
	n, err := v.paths.DecodeNode(key, value)
	reason := ReasonMalformed
	var info nodeInfo
	if err == nil && n.ClusterID != uint32(v.id) {
		err, reason = fmt.Errorf("node %s has cluster ID %d, the peer's is %d", name, n.ClusterID, v.id), ReasonWrongClusterID
	}
	if err == nil {
		info, reason, err = v.checkNode(name, n)
	}
	if err != nil {
		v.rej.reject(KindNodes, reason, key, err.Error())
		v.deleteNode(key) // the peer no longer asserts a valid node here
		return
	}
	v.accepted(KindNodes, key, true)
	v.mu.Lock()
	old := v.nodes[name]
	v.setNodeLocked(name, info)
	v.mu.Unlock()
	v.sink.UpsertNode(v.peer, n)
	v.recheck(append(old.cidrs, info.cidrs...))
}

// checkNode checks a node's pod CIDRs, addresses and WireGuard key
// against the peer's trust anchors, the rest of the mesh and the peer's
// other nodes.
func (v *validator) checkNode(name string, n schema.Node) (nodeInfo, string, error) {
	info := nodeInfo{cidrs: n.PodCIDRs(), key: n.WireguardPubKey}
	for _, c := range info.cidrs {
		if err := v.checkPodCIDR(c); err != nil {
			return nodeInfo{}, ReasonBadPodCIDR, fmt.Errorf("node %s: %w", name, err)
		}
	}
	for _, a := range n.IPAddresses {
		addr, ok := netip.AddrFromSlice(a.IP)
		if err := v.checkNodeAddress(addr); !ok || err != nil {
			return nodeInfo{}, ReasonBadNodeAddress, fmt.Errorf("node %s: address %s: %w", name, a.IP, err)
		}
		info.addrs = append(info.addrs, addr.Unmap())
	}
	if info.key == zeroKey {
		return nodeInfo{}, ReasonBadWireGuardKey, fmt.Errorf("node %s: the all-zero WireGuard key", name)
	}
	if kc, ok := v.claims.(KeyClaims); ok && info.key != "" {
		if owner, found := kc.WireGuardKeyOwner(v.peer, info.key); found {
			return nodeInfo{}, ReasonBadWireGuardKey, fmt.Errorf("node %s: WireGuard key %s is held by %s (reported for both)", name, info.key, owner)
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if other, ok := v.keyIndex[info.key]; ok && info.key != "" && other != name {
		return nodeInfo{}, ReasonBadWireGuardKey, fmt.Errorf("node %s: WireGuard key %s is held by the peer's node %s", name, info.key, other)
	}
	for _, c := range info.cidrs {
		if other, oc, ok := v.overlapLocked(name, c); ok {
			return nodeInfo{}, ReasonBadPodCIDR, fmt.Errorf("node %s: pod CIDR %v overlaps %v of the peer's node %s", name, c, oc, other)
		}
	}
	return info, "", nil
}

// setNodeLocked records (or, for the zero nodeInfo, forgets) the accepted
// node name and its indexes.
func (v *validator) setNodeLocked(name string, info nodeInfo) {
	if old, ok := v.nodes[name]; ok {
		for _, c := range old.cidrs {
			if v.cidrIndex[c] == name {
				delete(v.cidrIndex, c)
				if c.Bits() >= bucketBits(c) {
					b := bucketOf(c)
					delete(v.cidrBuckets[b], c)
					if len(v.cidrBuckets[b]) == 0 {
						delete(v.cidrBuckets, b)
					}
				}
			}
		}
		if v.keyIndex[old.key] == name {
			delete(v.keyIndex, old.key)
		}
	}
	if info.cidrs == nil && info.addrs == nil && info.key == "" {
		delete(v.nodes, name)
		return
	}
	v.nodes[name] = info
	for _, c := range info.cidrs {
		v.cidrIndex[c] = name
		if c.Bits() >= bucketBits(c) {
			b := bucketOf(c)
			if v.cidrBuckets[b] == nil {
				v.cidrBuckets[b] = map[netip.Prefix]struct{}{}
			}
			v.cidrBuckets[b][c] = struct{}{}
		}
	}
	if info.key != "" {
		v.keyIndex[info.key] = name
	}
}

// overlapLocked finds a pod CIDR of another of the peer's nodes that
// overlaps c: one that contains it (a lookup per prefix length), or one
// inside it: among the pod CIDRs of c's bucket (a /24, or a /64 for IPv6)
// when c is no wider than a bucket, else by a scan (a node's pod CIDR
// wider than a bucket is rare).
func (v *validator) overlapLocked(name string, c netip.Prefix) (string, netip.Prefix, bool) {
	for bits := c.Bits(); bits >= 0; bits-- {
		sup := netip.PrefixFrom(c.Addr(), bits).Masked()
		if other, ok := v.cidrIndex[sup]; ok && other != name {
			return other, sup, true
		}
	}
	if c.Bits() >= bucketBits(c) {
		var found netip.Prefix
		for oc := range v.cidrBuckets[bucketOf(c)] {
			// The first in address order, whatever the map's order.
			if other := v.cidrIndex[oc]; other != name && c.Overlaps(oc) && (!found.IsValid() || comparePrefix(oc, found) < 0) {
				found = oc
			}
		}
		if found.IsValid() {
			return v.cidrIndex[found], found, true
		}
		return "", netip.Prefix{}, false
	}
	for oc, other := range v.cidrIndex {
		if other != name && c.Overlaps(oc) {
			return other, oc, true
		}
	}
	return "", netip.Prefix{}, false
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// KeyClaims is optionally implemented by Claims: who else in the mesh
// holds a WireGuard public key.
type KeyClaims interface {
	WireGuardKeyOwner(peer, key string) (owner string, found bool)
}

func (v *validator) deleteNode(key string) {
	if !v.accepted(KindNodes, key, false) {
		return
	}
	_, name, _ := v.paths.ParseNodeKey(key)
	v.mu.Lock()
	old := v.nodes[name]
	v.setNodeLocked(name, nodeInfo{})
	v.mu.Unlock()
	v.sink.DeleteNode(v.peer, name)
	v.recheck(old.cidrs)
}

// Identities.

func (v *validator) upsertIdentity(key string, value []byte) {
	id, labels, reason, err := v.checkIdentity(key, value)
	if err != nil {
		v.rej.reject(KindIdentities, reason, key, err.Error())
		v.deleteIdentity(key)
		return
	}
	v.accepted(KindIdentities, key, true)
	v.sink.UpsertIdentity(v.peer, id, labels)
}

func (v *validator) checkIdentity(key string, value []byte) (identity.NumericIdentity, identity.Labels, string, error) {
	in, err := v.paths.DecodeIdentity(key, value)
	if err != nil {
		return 0, identity.Labels{}, ReasonMalformed, err
	}
	id := identity.NumericIdentity(in.ID)
	if identity.IsReserved(id) {
		return 0, identity.Labels{}, ReasonReserved, fmt.Errorf("identity %d is reserved", id)
	}
	if !v.layout.Owns(v.id, id) {
		first, last := v.layout.Range(v.id)
		return 0, identity.Labels{}, ReasonOutsideRange, fmt.Errorf("identity %d is outside %s's range %d-%d", id, v.peer, first, last)
	}
	labels, err := identity.ParseKVStoreLabels(in.Labels)
	if err != nil {
		return 0, identity.Labels{}, ReasonMalformed, err
	}
	if reason, err := v.checkLabels(id, labels); err != nil {
		return 0, identity.Labels{}, reason, err
	}
	return id, labels, "", nil
}

func (v *validator) deleteIdentity(key string) {
	if !v.accepted(KindIdentities, key, false) {
		return
	}
	id, _ := v.paths.ParseIdentityKey(key)
	v.sink.DeleteIdentity(v.peer, identity.NumericIdentity(id))
}
