// Package tunnel encrypts and routes pod traffic between nodes with
// WireGuard: one device per node (default "cm-wg0"), one WireGuard peer per
// other node, AllowedIPs = the peer's pod CIDRs and node IP, and a route per
// pod CIDR through the device.
//
// Where the kernel has WireGuard, the device is a kernel link (netlink kind
// "wireguard"); where it has none, the package runs wireguard-go in-process
// on a TUN device. Both are configured through the same wgctrl calls (for
// wireguard-go, wgctrl talks to the UAPI socket the Device serves under
// /var/run/wireguard).
//
// Rules:
//   - The private key lives in a file (0600, created when absent) and is
//     reused across restarts, so the public key published on the Node stays
//     valid.
//   - The Device is the only writer of its WireGuard peers and of the routes
//     through it; Peers() is a datapath.Table that only a reconciler calls.
//   - WireGuard does not hold cluster and node names: a state file next to
//     the key maps public keys back to "cluster/node" keys. List reports
//     what the device holds (peers, endpoints, AllowedIPs, routes) and takes
//     only names, order and nil-ness from the state file.
//   - A new device (a userspace device after every restart, a kernel device
//     after a reboot) is seeded from the state file; an adopted kernel device
//     is left as it is and Close leaves it in place, so traffic survives an
//     agent restart.
//   - Goroutines (wireguard-go's UAPI server) are owned by the Device: Close
//     stops and waits for them.
package tunnel
