package tunnel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/clustermesh/clustermesh/agent/datapath"
)

// peerTable is Device.Peers().
type peerTable struct{ d *Device }

// Update configures the WireGuard peer of p (public key, endpoint
// NodeIP:ListenPort, AllowedIPs = pod CIDRs + node IP) and a route through
// the device per pod CIDR, replacing what key had before.
func (t peerTable) Update(ctx context.Context, key string, p datapath.Peer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	pub, err := validatePeer(key, p)
	if err != nil {
		return err
	}
	d := t.d
	if pub == d.priv.PublicKey() {
		return fmt.Errorf("peer %s: %w: WireGuard public key %s is this node's own", key, ErrInvalidPeer, p.WireguardPubKey)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, r := range d.state.peers {
		if k == key {
			continue
		}
		if rk, err := wgtypes.ParseKey(r.WireguardPubKey); err == nil && rk == pub {
			return fmt.Errorf("peer %s: %w: public key %s is already used by peer %s", key, ErrConflict, p.WireguardPubKey, k)
		}
		for _, c := range p.PodCIDRs {
			for _, rc := range r.PodCIDRs {
				if c.Overlaps(rc) {
					return fmt.Errorf("peer %s: %w: pod CIDR %v overlaps %v of peer %s", key, ErrConflict, c, rc, k)
				}
			}
		}
	}
	old, hadOld := d.state.peers[key]
	d.state.peers[key] = clonePeer(p)
	if err := d.state.save(); err != nil {
		if hadOld {
			d.state.peers[key] = old
		} else {
			delete(d.state.peers, key)
		}
		return fmt.Errorf("peer %s: %w", key, err)
	}
	return d.apply(key, p, pub, old, hadOld)
}

// apply writes p to the device and its routes; old is what key had.
func (d *Device) apply(key string, p datapath.Peer, pub wgtypes.Key, old datapath.Peer, hadOld bool) error {
	var pcs []wgtypes.PeerConfig
	if hadOld {
		if oldPub, err := wgtypes.ParseKey(old.WireguardPubKey); err == nil && oldPub != pub {
			pcs = append(pcs, wgtypes.PeerConfig{PublicKey: oldPub, Remove: true})
		}
	}
	allowed := make([]net.IPNet, 0, len(p.PodCIDRs)+1)
	for _, c := range p.PodCIDRs {
		allowed = append(allowed, *ipNet(c))
	}
	allowed = append(allowed, *ipNet(hostPrefix(p.NodeIP)))
	pcs = append(pcs, wgtypes.PeerConfig{
		PublicKey:         pub,
		Endpoint:          &net.UDPAddr{IP: p.NodeIP.AsSlice(), Port: d.cfg.ListenPort},
		ReplaceAllowedIPs: true,
		AllowedIPs:        allowed,
	})
	if err := d.wg.ConfigureDevice(d.cfg.Name, wgtypes.Config{Peers: pcs}); err != nil {
		return fmt.Errorf("peer %s: configure WireGuard peer on %s: %w", key, d.cfg.Name, err)
	}
	for _, c := range p.PodCIDRs {
		if err := d.nl.RouteReplace(d.route(c)); err != nil {
			return fmt.Errorf("peer %s: route %v via %s: %w", key, c, d.cfg.Name, err)
		}
	}
	if hadOld {
		for _, c := range old.PodCIDRs {
			if !slices.Contains(p.PodCIDRs, c) {
				if err := d.delRoute(c); err != nil {
					return fmt.Errorf("peer %s: %w", key, err)
				}
			}
		}
	}
	return nil
}

// Delete removes the peer of key and its routes; an absent key succeeds.
func (t peerTable) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := t.d
	d.mu.Lock()
	defer d.mu.Unlock()
	r, known := d.state.peers[key]
	var pubStr string
	switch {
	case known:
		pubStr = r.WireguardPubKey
	case strings.HasPrefix(key, orphanPrefix):
		pubStr = strings.TrimPrefix(key, orphanPrefix)
	default:
		return nil
	}
	if pub, err := wgtypes.ParseKey(pubStr); err == nil {
		if err := d.removePeer(key, pub, r.PodCIDRs); err != nil {
			return err
		}
	}
	if !known {
		return nil
	}
	delete(d.state.peers, key)
	if err := d.state.save(); err != nil {
		d.state.peers[key] = r
		return fmt.Errorf("peer %s: %w", key, err)
	}
	return nil
}

// removePeer removes the device's peer pub and the routes of cidrs and of
// every AllowedIP it has.
func (d *Device) removePeer(key string, pub wgtypes.Key, cidrs []netip.Prefix) error {
	dev, err := d.wg.Device(d.cfg.Name)
	if err != nil {
		return fmt.Errorf("peer %s: read WireGuard device %s: %w", key, d.cfg.Name, err)
	}
	routes := slices.Clone(cidrs)
	for _, wp := range dev.Peers {
		if wp.PublicKey == pub {
			for _, n := range wp.AllowedIPs {
				if pfx, ok := prefixOf(n); ok {
					routes = append(routes, pfx)
				}
			}
		}
	}
	if err := d.wg.ConfigureDevice(d.cfg.Name, wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: pub, Remove: true}}}); err != nil {
		return fmt.Errorf("peer %s: remove WireGuard peer from %s: %w", key, d.cfg.Name, err)
	}
	for _, c := range routes {
		if err := d.delRoute(c); err != nil {
			return fmt.Errorf("peer %s: %w", key, err)
		}
	}
	return nil
}

// List returns the peers the device holds. A peer is listed as its state
// record (names, order and nil-ness of PodCIDRs as written) when the device
// holds exactly that record: endpoint, AllowedIPs and a route per pod CIDR;
// otherwise as the device has it (pod CIDRs = AllowedIPs with a route,
// sorted), so that the reconciler sees the difference and writes it again.
// A device peer without a record is listed under "wireguard:<public key>".
func (t peerTable) List(ctx context.Context) (map[string]datapath.Peer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d := t.d
	d.mu.Lock()
	defer d.mu.Unlock()
	dev, err := d.wg.Device(d.cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("read WireGuard device %s: %w", d.cfg.Name, err)
	}
	routed, err := d.routed()
	if err != nil {
		return nil, err
	}
	byPub := make(map[wgtypes.Key]string, len(d.state.peers))
	for k, r := range d.state.peers {
		if pk, err := wgtypes.ParseKey(r.WireguardPubKey); err == nil {
			byPub[pk] = k
		}
	}
	out := make(map[string]datapath.Peer, len(dev.Peers))
	for _, wp := range dev.Peers {
		var ep netip.Addr
		if wp.Endpoint != nil {
			ep = wp.Endpoint.AddrPort().Addr().Unmap()
		}
		allowed := map[netip.Prefix]bool{}
		for _, n := range wp.AllowedIPs {
			if pfx, ok := prefixOf(n); ok {
				allowed[pfx] = true
			}
		}
		key, known := byPub[wp.PublicKey]
		if known && held(d.state.peers[key], ep, allowed, routed) {
			out[key] = clonePeer(d.state.peers[key])
			continue
		}
		p := datapath.Peer{NodeIP: ep, WireguardPubKey: wp.PublicKey.String()}
		if known {
			r := d.state.peers[key]
			p.Cluster, p.Node, p.WireguardPubKey = r.Cluster, r.Node, r.WireguardPubKey
		} else {
			key = orphanPrefix + wp.PublicKey.String()
		}
		for _, c := range slices.SortedFunc(maps.Keys(allowed), comparePrefix) {
			if routed[c] && (!ep.IsValid() || c != hostPrefix(ep)) {
				p.PodCIDRs = append(p.PodCIDRs, c)
			}
		}
		out[key] = p
	}
	return out, nil
}

// held says whether the device holds exactly r.
func held(r datapath.Peer, ep netip.Addr, allowed, routed map[netip.Prefix]bool) bool {
	if ep != r.NodeIP || len(allowed) != len(r.PodCIDRs)+1 || !allowed[hostPrefix(r.NodeIP)] {
		return false
	}
	for _, c := range r.PodCIDRs {
		if !allowed[c] || !routed[c] {
			return false
		}
	}
	return true
}

// routed returns the destinations of the main table's routes through the
// device.
func (d *Device) routed() (map[netip.Prefix]bool, error) {
	rs, err := d.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: d.ifindex}, netlink.RT_FILTER_OIF)
	if err != nil {
		return nil, fmt.Errorf("list routes via %s: %w", d.cfg.Name, err)
	}
	out := make(map[netip.Prefix]bool, len(rs))
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		if pfx, ok := prefixOf(*r.Dst); ok {
			out[pfx] = true
		}
	}
	return out, nil
}

// route is the route of a pod CIDR through the device, from the device's
// own address of that family if it has one.
func (d *Device) route(c netip.Prefix) *netlink.Route {
	r := &netlink.Route{LinkIndex: d.ifindex, Dst: ipNet(c)}
	if c.Addr().Is4() {
		r.Scope = netlink.SCOPE_LINK
	}
	for _, a := range d.cfg.Addresses {
		if a.Addr().Is4() == c.Addr().Is4() {
			r.Src = a.Addr().AsSlice()
			break
		}
	}
	return r
}

// delRoute removes the route of c through the device, whatever its scope
// (SCOPE_NOWHERE matches any, as with ip route del); an absent one is fine.
func (d *Device) delRoute(c netip.Prefix) error {
	err := d.nl.RouteDel(&netlink.Route{LinkIndex: d.ifindex, Dst: ipNet(c), Scope: netlink.SCOPE_NOWHERE})
	if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete route %v via %s: %w", c, d.cfg.Name, err)
	}
	return nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
