package identity

import (
	"fmt"
	"regexp"
	"strconv"
)

// ClusterID identifies a cluster of the mesh: 1..Layout.MaxClusterID. 0 means
// "no cluster ID" and is not valid in a mesh.
type ClusterID uint32

// String returns the cluster ID in decimal.
func (c ClusterID) String() string { return strconv.FormatUint(uint64(c), 10) }

// The two values Cilium accepts for max-connected-clusters.
const (
	MaxConnectedClusters255 uint32 = 255
	MaxConnectedClusters511 uint32 = 511
)

// Layout is how a 24-bit NumericIdentity splits into a cluster ID (top bits)
// and a cluster-local part (low bits), as Cilium's max-connected-clusters
// setting decides:
//
//	max connected clusters  cluster bits  local bits  IDs per cluster
//	255 (default)           8             16          65536
//	511                     9             15          32768
//
// Cluster c owns the identities [c<<localBits, (c+1)<<localBits - 1] (see
// Range), which is the allocation range Cilium uses for c >= 1.
//
// The zero Layout is the default 255 layout.
type Layout struct {
	wide bool // 511 layout; false is the 255 layout
}

// NewLayout returns the layout for max-connected-clusters 255 or 511.
func NewLayout(maxConnectedClusters uint32) (Layout, error) {
	switch maxConnectedClusters {
	case MaxConnectedClusters255:
		return Layout{}, nil
	case MaxConnectedClusters511:
		return Layout{wide: true}, nil
	}
	return Layout{}, fmt.Errorf("invalid max connected clusters %d: must be %d or %d", maxConnectedClusters, MaxConnectedClusters255, MaxConnectedClusters511)
}

// ClusterIDBits returns the number of identity bits that hold the cluster ID.
func (l Layout) ClusterIDBits() uint {
	if l.wide {
		return 9
	}
	return 8
}

// LocalBits returns the number of identity bits local to a cluster.
func (l Layout) LocalBits() uint { return NumericIdentityBits - l.ClusterIDBits() }

// MaxConnectedClusters returns 255 or 511.
func (l Layout) MaxConnectedClusters() uint32 { return uint32(l.MaxClusterID()) }

// MaxClusterID returns the largest valid cluster ID (255 or 511).
func (l Layout) MaxClusterID() ClusterID { return ClusterID(1)<<l.ClusterIDBits() - 1 }

// MaxLocal returns the largest cluster-local part (65535 or 32767).
func (l Layout) MaxLocal() uint32 { return uint32(1)<<l.LocalBits() - 1 }

// Range returns the first and last identity owned by cluster c. For c above
// MaxClusterID it returns the empty range (1, 0). Range(0) is [0, MaxLocal],
// which includes the reserved identities.
func (l Layout) Range(c ClusterID) (first, last NumericIdentity) {
	if c > l.MaxClusterID() {
		return 1, 0
	}
	first = NumericIdentity(c) << l.LocalBits()
	return first, first + NumericIdentity(l.MaxLocal())
}

// ClusterOf returns the cluster ID held in the top bits of id. Only the low
// 24 bits of id are looked at, so node-local identities (bit 24 and up, never
// shared in the mesh) are not recognized: check id <= MaxNumericIdentity
// first when that matters.
func (l Layout) ClusterOf(id NumericIdentity) ClusterID {
	return ClusterID((id & MaxNumericIdentity) >> l.LocalBits())
}

// LocalOf returns the cluster-local part of id.
func (l Layout) LocalOf(id NumericIdentity) uint32 {
	return uint32(id) & l.MaxLocal()
}

// Owns reports whether id lies in Range(c).
func (l Layout) Owns(c ClusterID, id NumericIdentity) bool {
	first, last := l.Range(c)
	return first <= id && id <= last
}

// Make returns the identity with cluster ID c and cluster-local part local.
//
// c must be at most MaxClusterID; c == 0 (a cluster without an ID) is
// allowed so that single-cluster identities can be built too. local must be
// in 1..MaxLocal: local 0 is never allocated (Cilium's allocator may hand it
// out for c >= 1, so Owns and Range still include it). For c == 0, local must
// also be at least 256, since 0..255 are the reserved identities: Make never
// returns a reserved identity.
func (l Layout) Make(c ClusterID, local uint32) (NumericIdentity, error) {
	if c > l.MaxClusterID() {
		return 0, fmt.Errorf("cannot make identity for cluster %d: cluster ID above %d (max connected clusters %d): use a cluster ID in 1..%d", c, l.MaxClusterID(), l.MaxConnectedClusters(), l.MaxClusterID())
	}
	lo := uint32(1)
	if c == 0 {
		lo = uint32(MinimalAllocationIdentity)
	}
	if local < lo || local > l.MaxLocal() {
		return 0, fmt.Errorf("cannot make identity for cluster %d: local part %d out of range: use %d..%d (max connected clusters %d)", c, local, lo, l.MaxLocal(), l.MaxConnectedClusters())
	}
	return NumericIdentity(c)<<l.LocalBits() | NumericIdentity(local), nil
}

// ValidateClusterID reports whether c is a valid mesh cluster ID: 1..255 or
// 1..511 depending on the layout.
func (l Layout) ValidateClusterID(c ClusterID) error {
	if c < 1 || c > l.MaxClusterID() {
		return fmt.Errorf("invalid cluster ID %d: must be between 1 and %d with max connected clusters %d", c, l.MaxClusterID(), l.MaxConnectedClusters())
	}
	return nil
}

// MaxClusterNameLength is the longest valid cluster name.
const MaxClusterNameLength = 32

// clusterNameRE is Cilium's rule for cluster names (a DNS-1123 label).
var clusterNameRE = regexp.MustCompile(`^([a-z0-9][-a-z0-9]*)?[a-z0-9]$`)

// ValidateClusterName reports whether name is a valid cluster name: at most
// 32 characters matching ^([a-z0-9][-a-z0-9]*)?[a-z0-9]$.
func ValidateClusterName(name string) error {
	if len(name) > MaxClusterNameLength {
		return fmt.Errorf("invalid cluster name %q: %d characters long: use at most %d", name, len(name), MaxClusterNameLength)
	}
	if !clusterNameRE.MatchString(name) {
		return fmt.Errorf("invalid cluster name %q: use only lowercase letters, digits and '-', starting and ending with a letter or digit (%s)", name, clusterNameRE)
	}
	return nil
}
