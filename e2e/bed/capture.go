//go:build linux

package bed

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// Capture records every frame crossing the underlay (all ports of the
// fabric's bridge) through an AF_PACKET socket until stopped.
type Capture struct {
	fd     int
	wg     sync.WaitGroup
	stopc  chan struct{}
	mu     sync.Mutex // guards frames
	frames [][]byte
}

// CaptureUnderlay starts a capture on the underlay.
func (b *Bed) CaptureUnderlay() (*Capture, error) {
	c := &Capture{stopc: make(chan struct{})}
	if err := netnsutil.Do(b.fabric, func() error {
		var err error
		c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		tv := unix.Timeval{Usec: 50_000}
		return unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	}); err != nil {
		return nil, fmt.Errorf("capture on the underlay: %w", err)
	}
	c.wg.Go(func() {
		buf := make([]byte, 1<<16)
		for {
			select {
			case <-c.stopc:
				return
			default:
			}
			n, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil {
				continue // timeout: look at stopc
			}
			c.mu.Lock()
			c.frames = append(c.frames, bytes.Clone(buf[:n]))
			c.mu.Unlock()
		}
	})
	return c, nil
}

// CaptureResult is what crossed the underlay.
type CaptureResult struct {
	Frames int
	// WireGuard counts UDP frames from or to the WireGuard port.
	WireGuard int
	// WithMarker counts, for each marker, the frames containing it
	// anywhere (a frame is seen once per port of the bridge it crosses).
	WithMarker map[string]int
}

// Stop ends the capture and counts the frames with each marker.
func (c *Capture) Stop(wireguardPort uint16, markers ...string) CaptureResult {
	select {
	case <-c.stopc:
	default:
		close(c.stopc)
		c.wg.Wait()
		unix.Close(c.fd)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := CaptureResult{Frames: len(c.frames), WithMarker: map[string]int{}}
	for _, f := range c.frames {
		for _, m := range markers {
			if bytes.Contains(f, []byte(m)) {
				r.WithMarker[m]++
			}
		}
		if len(f) >= 14+20 && binary.BigEndian.Uint16(f[12:14]) == unix.ETH_P_IP && f[14+9] == unix.IPPROTO_UDP {
			ihl := int(f[14]&0x0f) * 4
			if len(f) >= 14+ihl+4 {
				sp, dp := binary.BigEndian.Uint16(f[14+ihl:]), binary.BigEndian.Uint16(f[14+ihl+2:])
				if sp == wireguardPort || dp == wireguardPort {
					r.WireGuard++
				}
			}
		}
	}
	return r
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
