package tunnel_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/internal/netnsutil"
	"github.com/clustermesh/clustermesh/tunnel"
)

// requireRoot fails (it does not skip): the features exist on the machine
// the tests are for.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("privileged test: needs root (CAP_NET_ADMIN for network namespaces, veth, TUN and routes; CAP_NET_RAW for the packet capture); run as root")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Fatalf("privileged test: needs /dev/net/tun for wireguard-go: %v", err)
	}
}

// ip runs the ip command.
func ip(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// uniq returns a short random prefix for names of one test.
func uniq(t testing.TB) string {
	t.Helper()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "cmt" + hex.EncodeToString(b)
}

// newNS creates a named network namespace with lo up, deleted at cleanup,
// and returns its path.
func newNS(t testing.TB, name string) string {
	t.Helper()
	ip(t, "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ip(t, "-n", name, "link", "set", "lo", "up")
	return "/var/run/netns/" + name
}

// inNetNS runs f on a thread in the namespace at path. Sockets f creates
// stay in that namespace whichever goroutine uses them later.
func inNetNS(t testing.TB, path string, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in %s: %v", path, err)
	}
}

// node is a "node" namespace with an underlay veth, a pod namespace behind
// a second veth, and a tunnel.Device.
type node struct {
	name, ns, podNS string
	nodeIP, podIP   string // addresses without prefix length
	podCIDR         string
	cfg             tunnel.Config
	dev             *tunnel.Device
	owner           testing.TB // the test that closes the device at its end
}

// pair is two nodes joined by a veth pair (ul0 on both sides).
type pair struct{ a, b *node }

// newPair builds the topology:
//
//	pod-a (10.11.0.10) -- a (10.11.0.1 | 192.168.77.1 ul0) == ul0 (192.168.77.2) b (10.12.0.1) -- pod-b (10.12.0.10)
//
// with forwarding on in both nodes, and no route between the pod CIDRs:
// that is the tunnel's job.
func newPair(t testing.TB) *pair {
	t.Helper()
	p := uniq(t)
	dir := t.TempDir()
	mk := func(suffix string, i int) *node {
		n := &node{owner: t, name: p + suffix, nodeIP: fmt.Sprintf("192.168.77.%d", i), podIP: fmt.Sprintf("10.1%d.0.10", i), podCIDR: fmt.Sprintf("10.1%d.0.0/24", i)}
		n.ns = newNS(t, n.name)
		n.podNS = newNS(t, n.name+"p")
		ip(t, "-n", n.name, "link", "add", "pod0", "type", "veth", "peer", "name", "eth0", "netns", n.name+"p")
		ip(t, "-n", n.name, "addr", "add", fmt.Sprintf("10.1%d.0.1/24", i), "dev", "pod0")
		ip(t, "-n", n.name, "link", "set", "pod0", "up")
		ip(t, "-n", n.name+"p", "addr", "add", n.podIP+"/24", "dev", "eth0")
		ip(t, "-n", n.name+"p", "link", "set", "eth0", "up")
		ip(t, "-n", n.name+"p", "route", "add", "default", "via", fmt.Sprintf("10.1%d.0.1", i))
		out, err := exec.Command("ip", "netns", "exec", n.name, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput()
		if err != nil {
			t.Fatalf("enable forwarding in %s: %v: %s", n.name, err, out)
		}
		n.cfg = tunnel.Config{
			Name:      p + suffix + "wg",
			KeyFile:   filepath.Join(dir, suffix, "wg.key"),
			NetNSPath: n.ns,
		}
		return n
	}
	pr := &pair{a: mk("a", 1), b: mk("b", 2)}
	ip(t, "-n", pr.a.name, "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", pr.b.name)
	for _, n := range []*node{pr.a, pr.b} {
		ip(t, "-n", n.name, "addr", "add", n.nodeIP+"/24", "dev", "ul0")
		ip(t, "-n", n.name, "link", "set", "ul0", "up")
	}
	return pr
}

// start opens n's device (again, after a close: a restart).
func (n *node) start(t testing.TB) {
	t.Helper()
	d, err := tunnel.New(context.WithoutCancel(t.Context()), n.cfg)
	if err != nil {
		t.Fatalf("node %s: tunnel.New: %v", n.name, err)
	}
	n.dev = d
	n.owner.Cleanup(func() { _ = d.Close() })
}

// stop closes n's device.
func (n *node) stop(t testing.TB) {
	t.Helper()
	if err := n.dev.Close(); err != nil {
		t.Fatalf("node %s: Close: %v", n.name, err)
	}
}

// echoServer listens on port in ns and echoes every connection until the
// test ends.
func echoServer(t testing.TB, ns, addr string) {
	t.Helper()
	var ln net.Listener
	inNetNS(t, ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
}

// dial connects from ns to addr.
func dial(t testing.TB, ns, addr string, timeout time.Duration) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var derr error
	inNetNS(t, ns, func() error {
		c, derr = net.DialTimeout("tcp", addr, timeout)
		return nil
	})
	return c, derr
}

// echo sends msg from ns to the echo server at addr and checks the answer.
func echo(t testing.TB, ns, addr string, msg []byte) error {
	t.Helper()
	c, err := dial(t, ns, addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo differs")
	}
	return nil
}

// startCapture reads every frame on one interface of a namespace until
// stopped (at cleanup at the latest).
func startCapture(t testing.TB, ns, ifname string) *netnsutil.Capture {
	t.Helper()
	c, err := netnsutil.StartCapture(ns, ifname)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	return c
}

// ipv4 is what the capture tells of an Ethernet frame with an IPv4 packet.
type ipv4 struct {
	src, dst         net.IP
	proto            uint8
	srcPort, dstPort uint16
}

func parseIPv4(frame []byte) (ipv4, bool) {
	if len(frame) < 14+20 || binary.BigEndian.Uint16(frame[12:14]) != unix.ETH_P_IP {
		return ipv4{}, false
	}
	p := frame[14:]
	ihl := int(p[0]&0x0f) * 4
	h := ipv4{src: net.IP(p[12:16]), dst: net.IP(p[16:20]), proto: p[9]}
	if (h.proto == unix.IPPROTO_UDP || h.proto == unix.IPPROTO_TCP) && len(p) >= ihl+4 {
		h.srcPort = binary.BigEndian.Uint16(p[ihl:])
		h.dstPort = binary.BigEndian.Uint16(p[ihl+2:])
	}
	return h, true
}
