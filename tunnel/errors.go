package tunnel

import "errors"

var (
	// ErrInvalidPeer is returned (wrapped, naming the node) by Update for a
	// peer that cannot be configured: no or an invalid WireGuard public key,
	// no node IP, an unmasked pod CIDR.
	ErrInvalidPeer = errors.New("invalid WireGuard peer")
	// ErrConflict is returned by Update when another peer already holds the
	// public key or an overlapping pod CIDR.
	ErrConflict = errors.New("conflicting WireGuard peer")
	// ErrUnsupported is returned where WireGuard cannot run (not Linux, or
	// neither kernel WireGuard nor /dev/net/tun in Mode "auto").
	ErrUnsupported = errors.New("WireGuard not supported")
)
