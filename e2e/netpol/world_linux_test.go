package netpol

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/netnsutil"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// wpod is a pod of the world: a network namespace behind a veth of the
// node namespace, attached to the datapath as an endpoint.
type wpod struct {
	name     Pod
	netns    string // path
	ip4, ip6 netip.Addr
	ifindex  int // host side
	ep       uint16
	id       identity.NumericIdentity
}

func (p *wpod) addr(family int) netip.Addr {
	if family == 6 {
		return p.ip6
	}
	return p.ip4
}

// Addr is the pod's address in family (the scenarios' Addrs).
func (w *world) Addr(p Pod, family int) netip.Addr { return w.byKey[p].addr(family) }

// namedPorts are the model's container ports, as the agent's state holds
// them.
func namedPorts() []schema.NamedPort {
	var out []schema.NamedPort
	for _, np := range NamedPorts() {
		out = append(out, schema.NamedPort{Name: np.Name, Port: np.Port, Protocol: np.Protocol})
	}
	return out
}

// world is one node: a node namespace routing between the pods, the eBPF
// datapath loaded and attached to every pod, and a reader of its drops.
type world struct {
	d     *bpf.Datapath
	node  string
	pods  []*wpod
	byKey map[Pod]*wpod
	drops *dropWatch
}

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("privileged test: needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) to load the datapath and create network namespaces; run as root")
	}
}

func newWorld(t *testing.T) *world {
	t.Helper()
	requireRoot(t)
	bpffs := t.TempDir()
	if err := unix.Mount("bpffs", bpffs, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs at %s: %v", bpffs, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(bpffs, unix.MNT_DETACH) })
	d, err := bpf.Load(bpf.Options{PinDir: filepath.Join(bpffs, "clustermesh")})
	if err != nil {
		t.Fatalf("load the datapath: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })

	prefix := "cmnp-" + randHex(3) + "-"
	w := &world{d: d, byKey: map[Pod]*wpod{}}
	w.node = newNetns(t, prefix+"node", true, map[string]string{
		"net/ipv6/conf/all/forwarding": "1", "net/ipv6/conf/default/accept_dad": "0"})
	nh, err := netnsutil.Netlink(w.node)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	i := 0
	for _, ns := range Namespaces {
		for _, name := range PodNames {
			p := &wpod{name: Pod(ns + "/" + name), ep: uint16(i + 1), id: identity.NumericIdentity(65537 + i),
				ip4: netip.AddrFrom4([4]byte{10, 0, byte(i + 1), 1}),
				ip6: netip.AddrFrom16([16]byte{0xfd, 7: byte(i + 1), 15: 1})}
			p.netns = newNetns(t, fmt.Sprintf("%s%d", prefix, i), false, map[string]string{"net/ipv6/conf/default/accept_dad": "0"})
			gw4 := netip.AddrFrom4([4]byte{10, 0, byte(i + 1), 254})
			gw6 := netip.AddrFrom16([16]byte{0xfd, 7: byte(i + 1), 15: 0xfe})
			p.ifindex = addVeth(t, nh, p, fmt.Sprintf("h%d", i), gw4, gw6)
			if err := netnsutil.Do(w.node, func() error { return d.AttachEndpoint(p.ifindex, p.ep) }); err != nil {
				t.Fatalf("attach %s: %v", p.name, err)
			}
			for _, a := range []netip.Addr{p.ip4, p.ip6} {
				if err := d.IPCache().Update(netip.PrefixFrom(a, a.BitLen()), bpf.IPCacheValue{Identity: uint32(p.id)}); err != nil {
					t.Fatal(err)
				}
			}
			serve(t, p)
			w.pods = append(w.pods, p)
			w.byKey[p.name] = p
			i++
		}
	}
	w.drops = watchDrops(t, d)
	return w
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newNetns creates a named network namespace with sysctls, deleted at
// cleanup.
func newNetns(t *testing.T, name string, forward bool, sysctls map[string]string) string {
	t.Helper()
	path, err := netnsutil.NewNamed(name, forward)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(name) })
	err = netnsutil.Do(path, func() error {
		for k, v := range sysctls {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// addVeth links pod p to the node (nh) through host interface host with
// gateways gw4 and gw6, and returns the host side's index.
func addVeth(t *testing.T, nh *netlink.Handle, p *wpod, host string, gw4, gw6 netip.Addr) int {
	t.Helper()
	pns, err := netns.GetFromPath(p.netns)
	if err != nil {
		t.Fatal(err)
	}
	defer pns.Close()
	if err := nh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(pns))}); err != nil {
		t.Fatalf("add veth %s: %v", host, err)
	}
	hl, err := nh.LinkByName(host)
	if err != nil {
		t.Fatal(err)
	}
	for _, gw := range []netip.Addr{gw4, gw6} {
		if err := nh.AddrAdd(hl, linkAddr(gw)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nh.LinkSetUp(hl); err != nil {
		t.Fatal(err)
	}
	ph, err := netnsutil.Netlink(p.netns)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()
	eth, err := ph.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{p.ip4, p.ip6} {
		if err := ph.AddrAdd(eth, linkAddr(a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ph.LinkSetUp(eth); err != nil {
		t.Fatal(err)
	}
	for _, gw := range []netip.Addr{gw4, gw6} {
		if err := ph.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
			t.Fatalf("%s: default route via %v: %v", p.name, gw, err)
		}
	}
	return hl.Attrs().Index
}

// linkAddr is a on a pod's link: /24 or /64, usable at once (no DAD).
func linkAddr(a netip.Addr) *netlink.Addr {
	bits, flags := 24, 0
	if a.Is6() {
		bits, flags = 64, unix.IFA_F_NODAD
	}
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}, Flags: flags}
}

// serve runs the pod's servers: TCP and UDP on every port and address,
// answering each connection or datagram with the pod's name.
func serve(t *testing.T, p *wpod) {
	t.Helper()
	var lns []net.Listener
	var pcs []net.PacketConn
	err := netnsutil.Do(p.netns, func() error {
		for _, a := range []netip.Addr{p.ip4, p.ip6} {
			for _, port := range Ports {
				ap := netip.AddrPortFrom(a, port).String()
				ln, err := net.Listen("tcp", ap)
				if err != nil {
					return err
				}
				pc, err := net.ListenPacket("udp", ap)
				if err != nil {
					return err
				}
				lns, pcs = append(lns, ln), append(pcs, pc)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("servers of %s: %v", p.name, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		for _, pc := range pcs {
			pc.Close()
		}
		wg.Wait()
	})
	reply := []byte(string(p.name) + "\n")
	for _, ln := range lns {
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write(reply)
				c.Close()
			}
		})
	}
	for _, pc := range pcs {
		wg.Go(func() {
			buf := make([]byte, 64)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(reply, from)
			}
		})
	}
}

// flowKey names a probe's flow as the datapath's drop events do.
type flowKey struct {
	src, dst netip.Addr
	port     uint16
	proto    uint8
}

// dropWatch tells probes that the datapath dropped their flow, so that a
// refused probe ends as soon as the datapath decided, not after a timeout.
type dropWatch struct {
	mu      sync.Mutex
	waiters map[flowKey]chan struct{}
}

func watchDrops(t *testing.T, d *bpf.Datapath) *dropWatch {
	t.Helper()
	r, err := d.Events()
	if err != nil {
		t.Fatal(err)
	}
	w := &dropWatch{waiters: map[flowKey]chan struct{}{}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); r.Close(); <-done })
	go func() {
		defer close(done)
		for {
			ev, err := r.Read(ctx)
			if errors.Is(err, bpf.ErrInvalidEvent) {
				continue
			}
			if err != nil {
				return
			}
			if ev.Verdict != bpf.Dropped {
				continue
			}
			k := flowKey{ev.Src.Addr(), ev.Dst.Addr(), ev.Dst.Port(), ev.Proto}
			w.mu.Lock()
			if ch, ok := w.waiters[k]; ok {
				close(ch)
				delete(w.waiters, k)
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// wait returns a channel closed when the datapath drops a packet of k.
func (w *dropWatch) wait(k flowKey) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	w.mu.Lock()
	w.waiters[k] = ch
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		if w.waiters[k] == ch {
			delete(w.waiters, k)
		}
		w.mu.Unlock()
	}
}

// probeTimeout bounds a probe the datapath neither answers nor drops.
const probeTimeout = 5 * time.Second

// probe connects from pod from to pod to over family, port and protocol,
// and reports whether to answered (and an error saying why not).
func (w *world) probe(ctx context.Context, from, to *wpod, family int, port uint16, proto string) (bool, error) {
	dst := netip.AddrPortFrom(to.addr(family), port)
	pnum := uint8(6)
	if proto == "UDP" {
		pnum = 17
	}
	dropped, done := w.drops.wait(flowKey{from.addr(family), dst.Addr(), port, pnum})
	defer done()
	var answer string
	err := netnsutil.Do(from.netns, func() error {
		ctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		go func() {
			select {
			case <-dropped:
				cancel()
			case <-ctx.Done():
			}
		}()
		var c net.Conn
		var err error
		if proto == "TCP" {
			var d net.Dialer
			c, err = d.DialContext(ctx, "tcp", dst.String())
		} else {
			c, err = net.Dial("udp", dst.String())
		}
		if err != nil {
			return err
		}
		defer c.Close()
		unblock := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
		defer unblock()
		if proto == "UDP" {
			if _, err := c.Write([]byte("probe")); err != nil {
				return err
			}
		}
		answer, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	switch {
	case err != nil:
		select {
		case <-dropped:
			return false, fmt.Errorf("dropped by the datapath")
		default:
			return false, err
		}
	case strings.TrimSpace(answer) != string(to.name):
		return false, fmt.Errorf("answered by %q", answer)
	}
	return true, nil
}
