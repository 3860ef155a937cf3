package bpfdp_test

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// pod is an endpoint: a network namespace behind a veth whose host side is
// in the node's namespace.
type pod struct {
	ns      string // path of its network namespace
	ip      netip.Addr
	ifindex int    // host side, in the node namespace
	ifname  string // host side
}

// topology is a node namespace (where the datapath attaches) routing
// between pods.
type topology struct {
	node string // path of its network namespace
	pods []*pod
}

var nsSeq atomic.Int32

// newNamedNS creates a named network namespace with IPv6 off (no stray
// IPv6 packets for the datapath to drop), deleted at cleanup.
func newNamedNS(t *testing.T, forward bool) string {
	t.Helper()
	name := fmt.Sprintf("cmdp-%d-%d", os.Getpid(), nsSeq.Add(1))
	path, err := netnsutil.NewNamed(name, forward)
	if err != nil {
		t.Fatalf("network namespace %s: %v", name, err)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(name) })
	err = netnsutil.Do(path, func() error {
		for _, k := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0o600); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("disable IPv6 in %s: %v", name, err)
	}
	return path
}

// newTopology creates a node namespace and n pods; pod i has 10.0.i+1.1/24
// behind host interface h<i> (10.0.i+1.254/24).
func newTopology(t *testing.T, n int) *topology {
	t.Helper()
	requireRoot(t)
	topo := &topology{node: newNamedNS(t, true)}
	nh, err := netnsutil.Netlink(topo.node)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	for i := range n {
		p := &pod{ns: newNamedNS(t, false), ip: netip.AddrFrom4([4]byte{10, 0, byte(i + 1), 1}), ifname: fmt.Sprintf("h%d", i)}
		gw := netip.AddrFrom4([4]byte{10, 0, byte(i + 1), 254})
		if err := addVeth(nh, p, gw); err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
		if err := configurePod(p, gw); err != nil {
			t.Fatalf("configure pod %d: %v", i, err)
		}
		topo.pods = append(topo.pods, p)
	}
	return topo
}

func addVeth(nh *netlink.Handle, p *pod, gw netip.Addr) error {
	pns, err := netns.GetFromPath(p.ns)
	if err != nil {
		return err
	}
	defer pns.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.ifname}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(pns))}
	if err := nh.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", p.ifname, err)
	}
	hl, err := nh.LinkByName(p.ifname)
	if err != nil {
		return err
	}
	p.ifindex = hl.Attrs().Index
	if err := nh.AddrAdd(hl, &netlink.Addr{IPNet: ipnet(gw, 24)}); err != nil {
		return err
	}
	return nh.LinkSetUp(hl)
}

func configurePod(p *pod, gw netip.Addr) error {
	ph, err := netnsutil.Netlink(p.ns)
	if err != nil {
		return err
	}
	defer ph.Close()
	l, err := ph.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := ph.LinkSetUp(l); err != nil {
		return err
	}
	if err := ph.AddrAdd(l, &netlink.Addr{IPNet: ipnet(p.ip, 24)}); err != nil {
		return err
	}
	if err := ph.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	return nil
}

func ipnet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}
}

// tcpEchoServer listens on the pod's address and echoes until cleanup.
func tcpEchoServer(t *testing.T, p *pod, port uint16) {
	t.Helper()
	var ln net.Listener
	err := netnsutil.Do(p.ns, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(p.ip, port).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// dial connects from pod p to dst over TCP.
func dial(p *pod, dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := netnsutil.Do(p.ns, func() (err error) {
		c, err = net.DialTimeout("tcp4", dst.String(), timeout)
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
