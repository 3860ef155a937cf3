//go:build linux

package bed

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// Capture records every frame crossing the underlay (all ports of the
// fabric's bridge) until stopped.
type Capture struct{ c *netnsutil.Capture }

// CaptureUnderlay starts a capture on the underlay.
func (b *Bed) CaptureUnderlay() (*Capture, error) {
	c, err := netnsutil.StartCapture(b.fabric, "")
	if err != nil {
		return nil, fmt.Errorf("the underlay: %w", err)
	}
	return &Capture{c: c}, nil
}

// CaptureResult is what crossed the underlay.
type CaptureResult struct {
	Frames int
	// WireGuard counts UDP frames (over IPv4 or IPv6) from or to the
	// WireGuard port.
	WireGuard int
	// WireGuard6 counts those of WireGuard's frames that are over IPv6.
	WireGuard6 int
	// WithMarker counts, for each marker, the frames containing it
	// anywhere (a frame is seen once per port of the bridge it crosses).
	WithMarker map[string]int
}

// Seen reports whether a frame captured so far contains marker.
func (c *Capture) Seen(marker string) bool { return c.c.Seen([]byte(marker)) }

// Stop ends the capture and counts the frames with each marker.
func (c *Capture) Stop(wireguardPort uint16, markers ...string) CaptureResult {
	frames := c.c.Stop()
	r := CaptureResult{Frames: len(frames), WithMarker: map[string]int{}}
	for _, f := range frames {
		for _, m := range markers {
			if bytes.Contains(f, []byte(m)) {
				r.WithMarker[m]++
			}
		}
		if l4, ok := udpPayload(f); ok && len(l4) >= 4 {
			sp, dp := binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
			if sp == wireguardPort || dp == wireguardPort {
				r.WireGuard++
				if binary.BigEndian.Uint16(f[12:14]) == unix.ETH_P_IPV6 {
					r.WireGuard6++
				}
			}
		}
	}
	return r
}

// udpPayload returns the UDP header and what follows of an Ethernet frame
// carrying UDP over IPv4 or over IPv6 (no extension headers).
func udpPayload(f []byte) ([]byte, bool) {
	if len(f) < 14 {
		return nil, false
	}
	switch binary.BigEndian.Uint16(f[12:14]) {
	case unix.ETH_P_IP:
		if len(f) < 14+20 || f[14+9] != unix.IPPROTO_UDP {
			return nil, false
		}
		ihl := int(f[14]&0x0f) * 4
		if len(f) < 14+ihl {
			return nil, false
		}
		return f[14+ihl:], true
	case unix.ETH_P_IPV6:
		if len(f) < 14+40 || f[14+6] != unix.IPPROTO_UDP {
			return nil, false
		}
		return f[14+40:], true
	}
	return nil, false
}
