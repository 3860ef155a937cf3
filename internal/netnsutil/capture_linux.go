package netnsutil

import (
	"bytes"
	"fmt"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// Capture reads every frame of one interface, or of every interface, of a
// network namespace through an AF_PACKET socket until stopped (tests:
// checking what crosses a link).
type Capture struct {
	fd     int
	wg     sync.WaitGroup
	stopc  chan struct{}
	once   sync.Once
	mu     sync.Mutex // guards frames
	frames [][]byte
}

// StartCapture captures on ifname in the namespace at path ("" for the
// process's); an empty ifname captures every interface. Stop it.
func StartCapture(path, ifname string) (*Capture, error) {
	c := &Capture{stopc: make(chan struct{})}
	proto := htons(unix.ETH_P_ALL)
	if err := Do(path, func() error {
		var err error
		c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("AF_PACKET socket (needs CAP_NET_RAW): %w", err)
		}
		if ifname != "" {
			ifi, err := net.InterfaceByName(ifname)
			if err != nil {
				unix.Close(c.fd)
				return err
			}
			if err := unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
				unix.Close(c.fd)
				return err
			}
		}
		tv := unix.Timeval{Usec: 50_000}
		return unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	}); err != nil {
		return nil, fmt.Errorf("capture on %q in %s: %w", ifname, path, err)
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

// Seen reports whether a frame captured so far contains b.
func (c *Capture) Seen(b []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.frames {
		if bytes.Contains(f, b) {
			return true
		}
	}
	return false
}

// Stop ends the capture (once) and returns the frames.
func (c *Capture) Stop() [][]byte {
	c.once.Do(func() {
		close(c.stopc)
		c.wg.Wait()
		unix.Close(c.fd)
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
