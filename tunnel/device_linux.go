package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// Device is the node's WireGuard device, kernel or wireguard-go.
type Device struct {
	cfg     Config
	log     *slog.Logger
	priv    wgtypes.Key
	mode    Mode // ModeKernel or ModeUserspace
	nl      *netlink.Handle
	wg      *wgctrl.Client
	ifindex int
	user    *userspace // nil for a kernel device

	mu    sync.Mutex // guards state; serializes changes of peers and routes
	state *stateFile

	closeOnce sync.Once
	closeErr  error
}

// New creates the device, or adopts an existing kernel one of that name, and
// sets its private key (from cfg.KeyFile), listen port, MTU and addresses.
// A device it creates is seeded with the peers of the state file.
func New(ctx context.Context, cfg Config) (_ *Device, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	priv, err := loadOrCreateKey(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	state, err := loadState(cfg.StateFile)
	if err != nil {
		return nil, err
	}
	h, err := netnsutil.Netlink(cfg.NetNSPath)
	if err != nil {
		return nil, err
	}
	d := &Device{cfg: cfg, log: cfg.Logger.With("device", cfg.Name), priv: priv, mode: cfg.Mode, nl: h, state: state}
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()
	created, err := d.ensureLink()
	if err != nil {
		return nil, err
	}
	if err := netnsutil.Do(cfg.NetNSPath, func() error {
		var err error
		d.wg, err = wgctrl.New()
		return err
	}); err != nil {
		return nil, fmt.Errorf("open wgctrl client: %w", err)
	}
	if err := d.configureLink(); err != nil {
		return nil, err
	}
	if created {
		d.restore(ctx)
	}
	d.log.Info("WireGuard device ready", "mode", d.mode, "publicKey", d.PublicKey(), "listenPort", cfg.ListenPort, "adopted", !created)
	return d, nil
}

// ensureLink adopts a kernel WireGuard link of the configured name, or
// creates one (kernel if possible and allowed, else wireguard-go). It
// reports whether it created the link.
func (d *Device) ensureLink() (created bool, err error) {
	name := d.cfg.Name
	l, err := d.nl.LinkByName(name)
	if err == nil {
		if l.Type() != "wireguard" {
			return false, fmt.Errorf("link %s exists and is a %q, not a kernel WireGuard device (a wireguard-go device of another process?): choose another name or delete it", name, l.Type())
		}
		if d.cfg.Mode == ModeUserspace {
			return false, fmt.Errorf("link %s is a kernel WireGuard device, mode %q asked: delete it or use mode %q", name, ModeUserspace, ModeKernel)
		}
		d.mode, d.ifindex = ModeKernel, l.Attrs().Index
		return false, nil
	}
	if !errors.As(err, new(netlink.LinkNotFoundError)) {
		return false, fmt.Errorf("look up link %s: %w", name, err)
	}
	if d.cfg.Mode != ModeUserspace {
		err := d.nl.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: d.cfg.MTU}})
		switch {
		case err == nil:
			d.mode = ModeKernel
			return true, d.lookupIndex()
		case d.cfg.Mode == ModeKernel || !errors.Is(err, unix.EOPNOTSUPP):
			return false, fmt.Errorf("create kernel WireGuard link %s: %w (mode %q needs the wireguard kernel module)", name, err, d.cfg.Mode)
		}
		d.log.Info("kernel has no WireGuard: running wireguard-go", "error", err)
	}
	d.user, err = startUserspace(d.cfg)
	if err != nil {
		return false, err
	}
	d.mode = ModeUserspace
	return true, d.lookupIndex()
}

func (d *Device) lookupIndex() error {
	l, err := d.nl.LinkByName(d.cfg.Name)
	if err != nil {
		return fmt.Errorf("look up link %s: %w", d.cfg.Name, err)
	}
	d.ifindex = l.Attrs().Index
	return nil
}

// configureLink sets key, port, MTU and addresses and brings the link up.
func (d *Device) configureLink() error {
	port := d.cfg.ListenPort
	if err := d.wg.ConfigureDevice(d.cfg.Name, wgtypes.Config{PrivateKey: &d.priv, ListenPort: &port}); err != nil {
		return fmt.Errorf("set private key and listen port %d of %s: %w", port, d.cfg.Name, err)
	}
	l, err := d.nl.LinkByIndex(d.ifindex)
	if err != nil {
		return fmt.Errorf("look up link %s: %w", d.cfg.Name, err)
	}
	if l.Attrs().MTU != d.cfg.MTU {
		if err := d.nl.LinkSetMTU(l, d.cfg.MTU); err != nil {
			return fmt.Errorf("set MTU %d of %s: %w", d.cfg.MTU, d.cfg.Name, err)
		}
	}
	for _, a := range d.cfg.Addresses {
		if err := d.nl.AddrReplace(l, &netlink.Addr{IPNet: ipNet(a)}); err != nil {
			return fmt.Errorf("add address %v to %s: %w", a, d.cfg.Name, err)
		}
	}
	if err := d.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", d.cfg.Name, err)
	}
	if d.user != nil {
		// wireguard-go notices the link going up by polling (every
		// second); bring it up now.
		if err := d.user.dev.Up(); err != nil {
			return fmt.Errorf("start wireguard-go on %s: %w", d.cfg.Name, err)
		}
	}
	return nil
}

// restore seeds a new device with the peers of the state file. A peer that
// fails is left to the reconciler, which sees it missing in List.
func (d *Device) restore(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for key, p := range d.state.peers {
		if ctx.Err() != nil {
			return
		}
		pub, err := validatePeer(key, p)
		if err == nil {
			err = d.apply(key, p, pub, datapath.Peer{}, false)
		}
		if err != nil {
			d.log.Warn("restore WireGuard peer from the state file", "peer", key, "error", err)
		}
	}
}

// PublicKey is the device's public key, base64: what the agent publishes on
// its Node (annotation network.cilium.io/wg-pub-key).
func (d *Device) PublicKey() string { return d.priv.PublicKey().String() }

// Mode is the implementation in use: ModeKernel or ModeUserspace.
func (d *Device) Mode() Mode { return d.mode }

// Name is the link name.
func (d *Device) Name() string { return d.cfg.Name }

// ListenPort is the UDP port of this node and of its peers' endpoints.
func (d *Device) ListenPort() int { return d.cfg.ListenPort }

// Peers is the table of WireGuard peers, keyed "cluster/node".
func (d *Device) Peers() datapath.Table[string, datapath.Peer] { return peerTable{d} }

// Close releases the device. A kernel link stays, with its peers and
// routes, so traffic flows on while the agent restarts; wireguard-go stops
// and its TUN device and routes go with it (New restores them from the
// state file).
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		var errs []error
		if d.user != nil {
			errs = append(errs, d.user.close())
		}
		if d.wg != nil {
			errs = append(errs, d.wg.Close())
		}
		d.nl.Close()
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// ipNet converts p for netlink and wgctrl.
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// prefixOf converts n back (IPv4 unmapped).
func prefixOf(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	a = a.Unmap()
	if bits == 128 && a.Is4() {
		ones -= 96
	}
	return netip.PrefixFrom(a, ones).Masked(), true
}
