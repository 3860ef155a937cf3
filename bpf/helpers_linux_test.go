package bpf

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// requireRoot fails (it does not skip): the features exist on the machines
// the project tests on, and the CI runs as root.
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("privileged test: needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN); run as root")
	}
}

// newBPFFS mounts a fresh bpffs instance for one test; unmounting it at
// cleanup releases every pin in it.
func newBPFFS(tb testing.TB) string {
	tb.Helper()
	requireRoot(tb)
	dir := tb.TempDir()
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		tb.Fatalf("mount bpffs at %s: %v", dir, err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			tb.Errorf("unmount bpffs %s: %v", dir, err)
		}
	})
	return filepath.Join(dir, "clustermesh")
}

// load loads a datapath pinned in pinDir and closes it at cleanup.
func load(tb testing.TB, opts Options) *Datapath {
	tb.Helper()
	d, err := Load(opts)
	if err != nil {
		tb.Fatalf("Load: %v", err)
	}
	tb.Cleanup(func() {
		if err := d.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return d
}

// newNS creates an anonymous network namespace that lives until cleanup.
func newNS(tb testing.TB, sysctls map[string]string) netns.NsHandle {
	tb.Helper()
	errc := make(chan error, 1)
	hc := make(chan netns.NsHandle, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			errc <- fmt.Errorf("new netns: %w", err)
			return
		}
		for k, v := range sysctls {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				errc <- fmt.Errorf("sysctl %s: %w", k, err)
				return // the locked thread dies with the goroutine
			}
		}
		if err := netns.Set(orig); err != nil {
			errc <- err
			return
		}
		runtime.UnlockOSThread()
		hc <- ns
		errc <- nil
	}()
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
	ns := <-hc
	tb.Cleanup(func() { _ = ns.Close() })
	return ns
}

// inNS runs fn on a thread in ns. Sockets created by fn stay in ns.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		err = fn()
		if serr := netns.Set(orig); serr != nil {
			errc <- errors.Join(err, serr)
			return // the locked thread dies with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// pod is an endpoint: a namespace behind a veth whose other end is in the
// node namespace.
type pod struct {
	ns netns.NsHandle
	// ip is the pod's address of the topology's family; a dual-stack pod
	// (family 6) also has ip4.
	ip, ip4 netip.Addr
	ifindex int // host side, in the node namespace
}

// topology is a node namespace routing between pods.
type topology struct {
	node netns.NsHandle
	pods []*pod
}

var podSysctls = map[string]string{
	"net/ipv6/conf/all/disable_ipv6":     "1",
	"net/ipv6/conf/default/disable_ipv6": "1",
}

// newTopologyFamily creates a node namespace and n pods; pod i has
// 10.0.i+1.1/24 behind host interface h<i> (10.0.i+1.254/24), and for
// family 6 (dual-stack pods) also fd00:0:0:i+1::1/64 behind
// fd00:0:0:i+1::fe, which is then its ip.
func newTopologyFamily(tb testing.TB, n, family int) *topology {
	tb.Helper()
	requireRoot(tb)
	nodeSysctls := map[string]string{"net/ipv4/ip_forward": "1"}
	pods := podSysctls
	if family == 6 {
		nodeSysctls["net/ipv6/conf/all/forwarding"] = "1"
		nodeSysctls["net/ipv6/conf/default/accept_dad"] = "0"
		pods = map[string]string{"net/ipv6/conf/default/accept_dad": "0"}
	} else {
		for k, v := range podSysctls {
			nodeSysctls[k] = v
		}
	}
	t := &topology{node: newNS(tb, nodeSysctls)}
	nh, err := netlink.NewHandleAt(t.node)
	if err != nil {
		tb.Fatal(err)
	}
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	if err == nil {
		err = nh.LinkSetUp(lo)
	}
	if err != nil {
		tb.Fatalf("node lo: %v", err)
	}
	for i := range n {
		p := &pod{ns: newNS(tb, pods), ip4: netip.AddrFrom4([4]byte{10, 0, byte(i + 1), 1})}
		p.ip = p.ip4
		host := fmt.Sprintf("h%d", i)
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(p.ns))}
		if err := nh.LinkAdd(veth); err != nil {
			tb.Fatalf("add veth %s: %v", host, err)
		}
		hl, err := nh.LinkByName(host)
		if err != nil {
			tb.Fatal(err)
		}
		p.ifindex = hl.Attrs().Index
		gws := []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i + 1), 254})}
		if family == 6 {
			p.ip = netip.AddrFrom16([16]byte{0xfd, 6: 0, 7: byte(i + 1), 15: 1})
			gws = append(gws, netip.AddrFrom16([16]byte{0xfd, 6: 0, 7: byte(i + 1), 15: 0xfe}))
		}
		for _, gw := range gws {
			if err := nh.AddrAdd(hl, podAddr(gw)); err != nil {
				tb.Fatal(err)
			}
		}
		if err := nh.LinkSetUp(hl); err != nil {
			tb.Fatal(err)
		}
		if err := configurePod(p, gws); err != nil {
			tb.Fatalf("configure pod %d: %v", i, err)
		}
		t.pods = append(t.pods, p)
	}
	return t
}

// podAddr is a's address on a pod's link: /24 for IPv4, /64 for IPv6,
// without duplicate address detection (the address is usable at once).
func podAddr(a netip.Addr) *netlink.Addr {
	if a.Is4() {
		return &netlink.Addr{IPNet: ipnet(a, 24)}
	}
	return &netlink.Addr{IPNet: ipnet(a, 64), Flags: unix.IFA_F_NODAD}
}

// configurePod brings the pod's links up and gives eth0 its addresses and
// a default route through each of gws (one per family).
func configurePod(p *pod, gws []netip.Addr) error {
	ph, err := netlink.NewHandleAt(p.ns)
	if err != nil {
		return err
	}
	defer ph.Close()
	for _, name := range []string{"lo", "eth0"} {
		l, err := ph.LinkByName(name)
		if err != nil {
			return err
		}
		if err := ph.LinkSetUp(l); err != nil {
			return err
		}
		if name != "eth0" {
			continue
		}
		for _, gw := range gws {
			ip := p.ip4
			if gw.Is6() {
				ip = p.ip
			}
			if err := ph.AddrAdd(l, podAddr(ip)); err != nil {
				return err
			}
			if err := ph.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
				return fmt.Errorf("default route via %v: %w", gw, err)
			}
		}
	}
	return nil
}

func ipnet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}
}

// attach attaches the datapath to the pod's host interface as endpoint ep.
func (t *topology) attach(tb testing.TB, d *Datapath, p *pod, ep uint16) {
	tb.Helper()
	if err := inNS(t.node, func() error { return d.AttachEndpoint(p.ifindex, ep) }); err != nil {
		tb.Fatalf("AttachEndpoint: %v", err)
	}
}

// hostPrefix is a's single-address prefix (/32, /128).
func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// tcpEchoServer listens on the pod's address and echoes lines until cleanup.
func tcpEchoServer(tb testing.TB, p *pod, port uint16) {
	tb.Helper()
	var ln net.Listener
	err := inNS(p.ns, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(p.ip, port).String())
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	tb.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1024)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// udpEchoServer answers every datagram with itself until cleanup.
func udpEchoServer(tb testing.TB, p *pod, port uint16) {
	tb.Helper()
	var pc net.PacketConn
	err := inNS(p.ns, func() (err error) {
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(p.ip, port).String())
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	tb.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

// dialTimeout is how long a connection attempt that policy drops is given.
// A drop is asserted by the verdict counters, not only by the timeout.
const dialTimeout = 400 * time.Millisecond

// dial connects from pod p to dst over TCP.
func dial(p *pod, dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNS(p.ns, func() (err error) {
		c, err = net.DialTimeout("tcp", dst.String(), timeout)
		return err
	})
	return c, err
}

// echo sends msg over c and waits for it to come back.
func echo(c net.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// udpExchange sends one datagram from a new socket in p to dst and waits
// for the answer.
func udpExchange(p *pod, dst netip.AddrPort, timeout time.Duration) error {
	return inNS(p.ns, func() error {
		c, err := net.Dial("udp", dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		return echoWithTimeout(c, "ping", timeout)
	})
}

func echoWithTimeout(c net.Conn, msg string, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != msg {
		return fmt.Errorf("echo %q, want %q", buf[:n], msg)
	}
	return nil
}
