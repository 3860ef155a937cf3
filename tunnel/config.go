package tunnel

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
)

// Mode chooses the WireGuard implementation.
type Mode string

const (
	// ModeAuto uses (or creates) a kernel device where the kernel has
	// WireGuard and runs wireguard-go otherwise.
	ModeAuto Mode = ""
	// ModeKernel requires kernel WireGuard.
	ModeKernel Mode = "kernel"
	// ModeUserspace runs wireguard-go in-process on a TUN device.
	ModeUserspace Mode = "userspace"
)

// Defaults.
const (
	DefaultName       = "cm-wg0"
	DefaultListenPort = 51871
	DefaultMTU        = 1420
)

// Config describes the node's WireGuard device.
type Config struct {
	// Name of the link; DefaultName if empty. In userspace mode the UAPI
	// socket /var/run/wireguard/<Name>.sock is shared by every network
	// namespace of the machine: nodes simulated on one machine need
	// distinct names.
	Name string
	// KeyFile holds the base64 private key; created (0600) if absent.
	// Required.
	KeyFile string
	// StateFile maps public keys to peer names; KeyFile + ".peers.json" if
	// empty.
	StateFile string
	// ListenPort is the UDP port of this node and, as the endpoint port,
	// of every peer (the mesh uses one port); DefaultListenPort if 0.
	ListenPort int
	// MTU of the link; DefaultMTU if 0.
	MTU int
	// Addresses are put on the device (for example the node's router IP in
	// its own pod CIDR, as a /32) and used as the source of routes to
	// peers, so that traffic the node itself sends to remote pods is
	// answered through the tunnel too.
	Addresses []netip.Prefix
	// Mode chooses kernel WireGuard or wireguard-go.
	Mode Mode
	// NetNSPath is the network namespace of the device (for example
	// /var/run/netns/node-1); empty: the process's.
	NetNSPath string
	// Logger; slog.DiscardHandler if nil.
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.KeyFile == "" {
		return c, fmt.Errorf("tunnel config: KeyFile is required")
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.StateFile == "" {
		c.StateFile = filepath.Clean(c.KeyFile) + ".peers.json"
	}
	if c.ListenPort == 0 {
		c.ListenPort = DefaultListenPort
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		return c, fmt.Errorf("tunnel config: listen port %d out of range", c.ListenPort)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	switch c.Mode {
	case ModeAuto, ModeKernel, ModeUserspace:
	default:
		return c, fmt.Errorf("tunnel config: unknown mode %q (want %q, %q or empty)", c.Mode, ModeKernel, ModeUserspace)
	}
	for _, a := range c.Addresses {
		if !a.IsValid() {
			return c, fmt.Errorf("tunnel config: invalid address %v", a)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
