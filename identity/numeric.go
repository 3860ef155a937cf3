package identity

import (
	"fmt"
	"strconv"
)

// NumericIdentity is a security identity as used in the datapath and in
// kvstore keys. Cluster-wide identities fit in 24 bits; see Layout for how
// the cluster ID is packed into them.
type NumericIdentity uint32

const (
	// NumericIdentityBits is the width of a cluster-wide identity.
	NumericIdentityBits = 24
	// MaxNumericIdentity is the largest cluster-wide identity.
	MaxNumericIdentity NumericIdentity = 1<<NumericIdentityBits - 1
	// MinimalAllocationIdentity is the first identity that is not reserved:
	// Cilium keeps 0..255 for reserved / well-known identities.
	MinimalAllocationIdentity NumericIdentity = 256
)

// String returns the identity in decimal, the form used in kvstore keys.
func (id NumericIdentity) String() string {
	return strconv.FormatUint(uint64(id), 10)
}

// ParseNumericIdentity parses the decimal suffix of an identity kvstore key
// (".../identities/v1/id/12345"). It accepts only the canonical form that
// String prints: ASCII digits, no sign, no leading zeros (except "0"
// itself), no spaces, at most MaxNumericIdentity.
func ParseNumericIdentity(s string) (NumericIdentity, error) {
	if s == "" {
		return 0, fmt.Errorf("invalid numeric identity %q: empty: give a decimal number between 0 and %d", s, MaxNumericIdentity)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("invalid numeric identity %q: %q is not a decimal digit: use only the digits 0-9, no sign or spaces", s, s[i])
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("invalid numeric identity %q: leading zero: write it without leading zeros", s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > uint64(MaxNumericIdentity) {
		return 0, fmt.Errorf("invalid numeric identity %q: larger than the 24-bit maximum %d", s, MaxNumericIdentity)
	}
	return NumericIdentity(n), nil
}

// Reserved identities, as in Cilium.
const (
	IdentityUnknown       NumericIdentity = 0
	ReservedHost          NumericIdentity = 1
	ReservedWorld         NumericIdentity = 2
	ReservedUnmanaged     NumericIdentity = 3
	ReservedHealth        NumericIdentity = 4
	ReservedInit          NumericIdentity = 5
	ReservedRemoteNode    NumericIdentity = 6
	ReservedKubeAPIServer NumericIdentity = 7
	ReservedIngress       NumericIdentity = 8
)

// reservedNames are the names of the named reserved identities; they are
// also the keys of their "reserved:" labels.
var reservedNames = [...]string{
	IdentityUnknown:       "unknown",
	ReservedHost:          "host",
	ReservedWorld:         "world",
	ReservedUnmanaged:     "unmanaged",
	ReservedHealth:        "health",
	ReservedInit:          "init",
	ReservedRemoteNode:    "remote-node",
	ReservedKubeAPIServer: "kube-apiserver",
	ReservedIngress:       "ingress",
}

// IsReserved reports whether id is in the reserved range 0..255, which Cilium
// keeps for reserved and well-known identities whether or not they have a
// name here. Such identities are never allocated and never belong to a
// remote cluster.
func IsReserved(id NumericIdentity) bool {
	return id < MinimalAllocationIdentity
}

// ReservedName returns the name of a named reserved identity ("host" for
// ReservedHost, "unknown" for IdentityUnknown); ok is false for every other
// identity, including the unnamed part of the reserved range.
func ReservedName(id NumericIdentity) (name string, ok bool) {
	if uint64(id) >= uint64(len(reservedNames)) {
		return "", false
	}
	return reservedNames[id], true
}

// ReservedLabels returns the labels of a named reserved identity, e.g.
// {reserved:host} for ReservedHost. It returns the empty set for
// IdentityUnknown, which has no labels, and for every unnamed identity.
func ReservedLabels(id NumericIdentity) Labels {
	name, ok := ReservedName(id)
	if !ok || id == IdentityUnknown {
		return Labels{}
	}
	return NewLabels(Label{Source: SourceReserved, Key: name})
}

// LookupReservedByName returns the reserved identity with the given name
// ("host", "remote-node", "unknown", ...).
func LookupReservedByName(name string) (NumericIdentity, bool) {
	for id, n := range reservedNames {
		if n == name {
			return NumericIdentity(id), true
		}
	}
	return 0, false
}
