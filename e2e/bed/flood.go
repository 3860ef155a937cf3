//go:build linux

package bed

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// FloodResult is what a flood sent.
type FloodResult struct {
	// Sent is the number of frames the pod's interface took; Refused the
	// writes it refused (ENOBUFS: the receiving side's backlog was full).
	Sent, Refused uint64
	// Took is how long the flood lasted.
	Took time.Duration
}

// Rate is the rate at which frames were sent, per second.
func (r FloodResult) Rate() float64 { return float64(r.Sent) / r.Took.Seconds() }

// FloodUDP sends crafted UDP datagrams (one byte of payload, from the
// pod's address and source port sport) to dst, rate per second for d or
// until ctx ends. The frames are written to an AF_PACKET socket on the
// pod's interface, addressed to its gateway's MAC address: a write per
// frame, none of a UDP socket's work, so that one goroutine reaches a
// rate a benchmark needs on a shared machine. IPv4 only.
func (p *Pod) FloodUDP(ctx context.Context, dst netip.AddrPort, sport uint16, rate int, d time.Duration) (FloodResult, error) {
	if !dst.Addr().Is4() || !p.IP.Is4() {
		return FloodResult{}, fmt.Errorf("flood from %s to %v: IPv4 only", p, dst)
	}
	if rate <= 0 {
		return FloodResult{}, fmt.Errorf("flood from %s: rate %d: want a positive number of frames per second", p, rate)
	}
	frame, ifindex, err := p.udpFrame(ctx, dst, sport)
	if err != nil {
		return FloodResult{}, fmt.Errorf("flood from %s to %v: %w", p, dst, err)
	}
	var fd int
	if err := netnsutil.Do(p.netns, func() error {
		var err error
		// Protocol 0: the socket sends, it receives nothing.
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind the AF_PACKET socket to interface %d: %w", ifindex, err)
		}
		return nil
	}); err != nil {
		return FloodResult{}, fmt.Errorf("flood from %s: %w", p, err)
	}
	defer unix.Close(fd)
	var res FloodResult
	start := time.Now()
	for ctx.Err() == nil {
		elapsed := time.Since(start)
		if elapsed >= d {
			break
		}
		due := uint64(elapsed.Seconds()*float64(rate)) + 1
		if res.Sent+res.Refused >= due {
			time.Sleep(time.Millisecond) // ahead: the next batch is due in a millisecond
			continue
		}
		// Behind (the sender got less CPU than the rate needs): it
		// catches up by at most a millisecond's worth per look at the
		// clock, so that the flood ends on time.
		due = min(due, res.Sent+res.Refused+uint64(max(rate/1000, 1)))
		for res.Sent+res.Refused < due {
			if _, err := unix.Write(fd, frame); err != nil {
				if errors.Is(err, unix.ENOBUFS) {
					res.Refused++
					continue
				}
				return res, fmt.Errorf("flood from %s: write: %w", p, err)
			}
			res.Sent++
		}
	}
	res.Took = time.Since(start)
	return res, nil
}

// udpFrame builds the Ethernet frame of a one-byte UDP datagram from the
// pod to dst, for the interface of the pod's route to dst (returned).
func (p *Pod) udpFrame(ctx context.Context, dst netip.AddrPort, sport uint16) ([]byte, int, error) {
	h, err := netnsutil.Netlink(p.netns)
	if err != nil {
		return nil, 0, err
	}
	defer h.Close()
	routes, err := h.RouteGet(dst.Addr().AsSlice())
	if err != nil {
		return nil, 0, fmt.Errorf("route to %v: %w", dst.Addr(), err)
	}
	if len(routes) == 0 {
		return nil, 0, fmt.Errorf("no route to %v", dst.Addr())
	}
	r := routes[0]
	link, err := h.LinkByIndex(r.LinkIndex)
	if err != nil {
		return nil, 0, fmt.Errorf("interface of the route to %v: %w", dst.Addr(), err)
	}
	next := dst.Addr()
	if gw, ok := netip.AddrFromSlice(r.Gw); ok {
		next = gw.Unmap()
	}
	// The next hop's address, resolved by the kernel for a datagram sent
	// the usual way if it is not yet.
	var mac net.HardwareAddr
	deadline := time.Now().Add(5 * time.Second)
	for mac == nil {
		neighs, err := h.NeighList(r.LinkIndex, netlink.FAMILY_V4)
		if err != nil {
			return nil, 0, fmt.Errorf("neighbours of %s: %w", link.Attrs().Name, err)
		}
		for _, n := range neighs {
			if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == next && len(n.HardwareAddr) == 6 &&
				n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT) != 0 {
				mac = n.HardwareAddr
			}
		}
		if mac != nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("the MAC address of %v (next hop to %v) is not resolved after 5 s", next, dst.Addr())
		}
		if err := netnsutil.Do(p.netns, func() error {
			c, err := net.Dial("udp4", dst.String())
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte{'x'})
			return err
		}); err != nil {
			return nil, 0, fmt.Errorf("resolve the next hop %v: %w", next, err)
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	const payload = 1
	f := make([]byte, 14+20+8+payload)
	copy(f[0:6], mac)
	copy(f[6:12], link.Attrs().HardwareAddr)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_IP)
	ip := f[14:34]
	ip[0] = 0x45                                             // version 4, 20-byte header
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+payload)) // total length
	binary.BigEndian.PutUint16(ip[6:], 0x4000)               // don't fragment
	ip[8], ip[9] = 64, unix.IPPROTO_UDP
	src, to := p.IP.As4(), dst.Addr().As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], to[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	udp := f[34:42]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], 8+payload) // checksum 0: none (IPv4)
	f[42] = 'x'
	return f, r.LinkIndex, nil
}

// checksum is the Internet checksum of b (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
