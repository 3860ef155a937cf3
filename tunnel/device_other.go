//go:build !linux

package tunnel

import (
	"context"
	"fmt"
	"runtime"

	"github.com/clustermesh/clustermesh/agent/datapath"
)

// Device is the node's WireGuard device; Linux only.
type Device struct{}

// New returns ErrUnsupported outside Linux.
func New(_ context.Context, _ Config) (*Device, error) {
	return nil, fmt.Errorf("tunnel on %s: %w (Linux only)", runtime.GOOS, ErrUnsupported)
}

// PublicKey is empty outside Linux.
func (d *Device) PublicKey() string { return "" }

// Mode is empty outside Linux.
func (d *Device) Mode() Mode { return "" }

// Name is empty outside Linux.
func (d *Device) Name() string { return "" }

// ListenPort is 0 outside Linux.
func (d *Device) ListenPort() int { return 0 }

// Peers is nil outside Linux.
func (d *Device) Peers() datapath.Table[string, datapath.Peer] { return nil }

// Close does nothing outside Linux.
func (d *Device) Close() error { return nil }
