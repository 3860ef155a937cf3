//go:build linux

package bed

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// newNetNS creates a named network namespace with lo up, and returns its
// path. It is deleted at Close. In a dual-stack or IPv6-only bed, IPv6
// forwarding is on too (with forward) and new interfaces skip duplicate
// address detection (the bed's addresses are unique; DAD would delay
// every pod's address).
func (b *Bed) newNetNS(name string, forward bool) (string, error) {
	path, err := netnsutil.NewNamed(name, forward)
	if err != nil {
		return "", err
	}
	b.record("netns", name)
	b.onClose(func() error { return netns.DeleteNamed(name) })
	if b.fam.has6() {
		sysctls := [][2]string{{"net/ipv6/conf/all/disable_ipv6", "0"}, {"net/ipv6/conf/default/disable_ipv6", "0"},
			{"net/ipv6/conf/all/accept_dad", "0"}, {"net/ipv6/conf/default/accept_dad", "0"}}
		if forward {
			sysctls = append(sysctls, [2]string{"net/ipv6/conf/all/forwarding", "1"})
		}
		if err := netnsutil.Do(path, func() error {
			for _, kv := range sysctls {
				if err := os.WriteFile("/proc/sys/"+kv[0], []byte(kv[1]), 0o600); err != nil {
					return fmt.Errorf("sysctl %s: %w", kv[0], err)
				}
			}
			return nil
		}); err != nil {
			return "", fmt.Errorf("network namespace %s: %w", name, err)
		}
	}
	return path, nil
}

func (b *Bed) setupFabric() error {
	path, err := b.newNetNS("cmbed"+b.run+"-fabric", false)
	if err != nil {
		return err
	}
	b.fabric = path
	h, err := netnsutil.Netlink(path)
	if err != nil {
		return err
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("underlay bridge: %w", err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("underlay bridge up: %w", err)
	}
	root, err := cgroup2Root()
	if err != nil {
		return err
	}
	b.cgroupRoot = filepath.Join(root, "clustermesh-bed-"+b.run)
	if err := os.Mkdir(b.cgroupRoot, 0o755); err != nil {
		return fmt.Errorf("the bed's cgroup: %w", err)
	}
	b.record("cgroup", b.cgroupRoot)
	b.onClose(func() error { return removeCgroup(b.cgroupRoot) })
	return nil
}

// plug joins a node namespace to the underlay with addrs on its eth0 (in
// underlay or underlay6 by family); the fabric's end is port.
func (b *Bed) plug(node, port string, addrs ...netip.Addr) error {
	fab, err := netnsutil.Netlink(b.fabric)
	if err != nil {
		return err
	}
	defer fab.Close()
	nodeNS, err := netns.GetFromPath(node)
	if err != nil {
		return fmt.Errorf("open %s: %w", node, err)
	}
	defer nodeNS.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port}, PeerName: "eth0", PeerNamespace: netlink.NsFd(nodeNS)}
	if err := fab.LinkAdd(veth); err != nil {
		return fmt.Errorf("underlay veth %s: %w", port, err)
	}
	br, err := fab.LinkByName("br0")
	if err != nil {
		return err
	}
	l, err := fab.LinkByName(port)
	if err != nil {
		return err
	}
	if err := fab.LinkSetMaster(l, br); err != nil {
		return err
	}
	if err := fab.LinkSetUp(l); err != nil {
		return err
	}
	h, err := netnsutil.Netlink(node)
	if err != nil {
		return err
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	for _, addr := range addrs {
		lan, flags := underlay, 0
		if addr.Is6() {
			lan, flags = underlay6, unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(eth, &netlink.Addr{IPNet: prefixIPNet(netip.PrefixFrom(addr, lan.Bits())), Flags: flags}); err != nil {
			return fmt.Errorf("underlay address %v: %w", addr, err)
		}
	}
	return h.LinkSetUp(eth)
}

// prefixIPNet is p (address and length, of either family) as a net.IPNet.
func prefixIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// forwarder accepts on 127.0.0.1:port inside a node namespace and
// connects to 127.0.0.1:port of the host: the node's path to a control
// plane (kube-apiserver, a clustermesh-apiserver's etcd).
type forwarder struct {
	mu sync.Mutex // guards ls
	ls map[int]net.Listener
}

func (f *forwarder) add(netnsPath string, port int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ls == nil {
		f.ls = map[int]net.Listener{}
	}
	if _, ok := f.ls[port]; ok {
		return nil
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var l net.Listener
	if err := netnsutil.Do(netnsPath, func() (err error) {
		l, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		return fmt.Errorf("forwarder on %s in %s: %w", addr, netnsPath, err)
	}
	f.ls[port] = l
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp4", addr)
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); _ = up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); _ = c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				<-done
				<-done
			}()
		}
	}()
	return nil
}

func (f *forwarder) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.ls {
		l.Close()
	}
	f.ls = nil
	return nil
}

func cgroup2Root() (string, error) {
	for _, dir := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified: the bed puts each node's pods in a cgroup v2 directory")
}

// removeCgroup removes a cgroup directory and its children (their
// processes must be gone).
func removeCgroup(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroup(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := unix.Rmdir(dir); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	return nil
}
