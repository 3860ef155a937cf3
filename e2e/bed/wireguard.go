//go:build linux

package bed

import (
	"fmt"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
)

// WireGuardPeers returns, for each WireGuard peer of the node's device, its
// endpoint's IP and the time of its last handshake (zero if none).
func (n *Node) WireGuardPeers() (map[string]time.Time, error) {
	wg, err := wgctrl.New()
	if err != nil {
		return nil, fmt.Errorf("wgctrl: %w", err)
	}
	defer wg.Close()
	d, err := wg.Device(n.WireGuardDevice)
	if err != nil {
		return nil, fmt.Errorf("node %s: WireGuard device %s: %w", n.Name, n.WireGuardDevice, err)
	}
	out := map[string]time.Time{}
	for _, p := range d.Peers {
		if p.Endpoint != nil {
			out[p.Endpoint.IP.String()] = p.LastHandshakeTime
		}
	}
	return out, nil
}
