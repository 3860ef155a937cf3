package tunnel

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/clustermesh/clustermesh/agent/datapath"
)

// orphanPrefix starts the key under which List reports a device peer that
// has no record in the state file (written by someone else, or a record
// lost): "wireguard:<public key>". Cluster names cannot contain ':', so it
// never collides with "cluster/node"; the reconciler prunes it.
const orphanPrefix = "wireguard:"

// validatePeer checks what WireGuard needs of p and returns its public key.
func validatePeer(key string, p datapath.Peer) (wgtypes.Key, error) {
	if strings.HasPrefix(key, orphanPrefix) {
		return wgtypes.Key{}, fmt.Errorf("peer %s: %w: the key is reserved for peers unknown to the agent", key, ErrInvalidPeer)
	}
	if p.WireguardPubKey == "" {
		return wgtypes.Key{}, fmt.Errorf("peer %s: %w: node has no WireGuard public key (annotation network.cilium.io/wg-pub-key missing?)", key, ErrInvalidPeer)
	}
	pub, err := wgtypes.ParseKey(p.WireguardPubKey)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("peer %s: %w: WireGuard public key %q: %w", key, ErrInvalidPeer, p.WireguardPubKey, err)
	}
	if !p.NodeIP.IsValid() || p.NodeIP.Zone() != "" || p.NodeIP.Is4In6() || p.NodeIP.IsUnspecified() {
		return wgtypes.Key{}, fmt.Errorf("peer %s: %w: node IP %q is not a usable endpoint", key, ErrInvalidPeer, p.NodeIP)
	}
	for i, c := range p.PodCIDRs {
		if !c.IsValid() || c != c.Masked() || c.Addr().Is4In6() {
			return wgtypes.Key{}, fmt.Errorf("peer %s: %w: pod CIDR %v is not a masked prefix (want %v)", key, ErrInvalidPeer, c, c.Masked())
		}
		if c == hostPrefix(p.NodeIP) {
			return wgtypes.Key{}, fmt.Errorf("peer %s: %w: pod CIDR %v is the node IP", key, ErrInvalidPeer, c)
		}
		for _, d := range p.PodCIDRs[:i] {
			if c.Overlaps(d) {
				return wgtypes.Key{}, fmt.Errorf("peer %s: %w: pod CIDRs %v and %v overlap", key, ErrInvalidPeer, d, c)
			}
		}
	}
	return pub, nil
}

// hostPrefix is a as a /32 or /128.
func hostPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}
