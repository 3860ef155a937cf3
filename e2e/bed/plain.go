//go:build linux

package bed

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/clustermesh/clustermesh/e2e/workload"
	"github.com/clustermesh/clustermesh/internal/netnsutil"
)

// PlainNode is a node namespace on the underlay with one pod behind a veth
// pair, wired by hand: no agent, no CNI, no BPF. Benchmarks use it for
// their baselines (a tunnel built by hand, plain routing).
type PlainNode struct {
	b       *Bed
	Name    string
	IP      netip.Addr   // on the underlay
	PodCIDR netip.Prefix // the pod has its second address
	NetNS   string
	// Pod is the node's one pod, running meshecho (no cgroup of its own).
	Pod *workload.Client
	// PodIP is the pod's address.
	PodIP netip.Addr
}

// AddPlainNode creates a plain node with underlay address 192.168.100.<host>
// (fd00:cb::<host> if podCIDR is IPv6: a node of podCIDR's family) and a
// pod at podCIDR's second address, its gateway the first. An IPv6 plain
// node needs a bed with IPv6 (FamilyDualStack, FamilyIPv6).
func (b *Bed) AddPlainNode(ctx context.Context, name string, host byte, podCIDR netip.Prefix) (*PlainNode, error) {
	lan := underlay
	if podCIDR.Addr().Is6() {
		if !b.fam.has6() {
			return nil, fmt.Errorf("plain node %s: IPv6 pod CIDR %v in an %v bed", name, podCIDR, b.fam)
		}
		lan = underlay6
	}
	n := &PlainNode{b: b, Name: name, IP: underlayAddr(lan, host), PodCIDR: podCIDR}
	var err error
	if n.NetNS, err = b.newNetNS(fmt.Sprintf("cmbed%s-%s", b.run, name), true); err != nil {
		return nil, err
	}
	if err := b.plug(n.NetNS, "u"+name, n.IP); err != nil {
		return nil, err
	}
	podNS, err := b.newNetNS(fmt.Sprintf("cmbed%s-%s-pod", b.run, name), false)
	if err != nil {
		return nil, err
	}
	gw := podCIDR.Masked().Addr().Next()
	n.PodIP = gw.Next()
	h, err := netnsutil.Netlink(n.NetNS)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	pns, err := netns.GetFromPath(podNS)
	if err != nil {
		return nil, err
	}
	defer pns.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vp0", MTU: podMTU}, PeerName: "eth0", PeerNamespace: netlink.NsFd(pns)}
	if err := h.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("plain node %s: pod veth: %w", name, err)
	}
	host0, err := h.LinkByName("vp0")
	if err != nil {
		return nil, err
	}
	bits := podCIDR.Bits()
	if err := h.AddrAdd(host0, &netlink.Addr{IPNet: prefixIPNet(netip.PrefixFrom(gw, bits))}); err != nil {
		return nil, err
	}
	if err := h.LinkSetUp(host0); err != nil {
		return nil, err
	}
	ph, err := netnsutil.Netlink(podNS)
	if err != nil {
		return nil, err
	}
	defer ph.Close()
	eth, err := ph.LinkByName("eth0")
	if err != nil {
		return nil, err
	}
	if err := ph.AddrAdd(eth, &netlink.Addr{IPNet: prefixIPNet(netip.PrefixFrom(n.PodIP, bits))}); err != nil {
		return nil, err
	}
	if err := ph.LinkSetUp(eth); err != nil {
		return nil, err
	}
	if err := ph.RouteAdd(&netlink.Route{Gw: gw.AsSlice(), LinkIndex: eth.Attrs().Index}); err != nil {
		return nil, fmt.Errorf("plain node %s: pod default route: %w", name, err)
	}
	sock := filepath.Join(b.dir, name+"-pod.sock")
	p := b.newProc(name+"/pod", podNS, "", b.bin("meshecho"), "--cluster=plain", "--namespace=default", "--pod="+name,
		"--port="+strconv.Itoa(WorkloadPort), "--control="+sock)
	if err := b.start(p); err != nil {
		return nil, err
	}
	n.Pod = workload.NewClient(sock)
	if err := b.waitUntil(ctx, 30*time.Second, "meshecho of "+name+"'s pod serving", func(context.Context) (bool, string) {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	}, p); err != nil {
		return nil, err
	}
	return n, nil
}

// RouteVia routes the other node's pod CIDR through its underlay address
// (plain routing, no tunnel).
func (n *PlainNode) RouteVia(other *PlainNode) error {
	h, err := netnsutil.Netlink(n.NetNS)
	if err != nil {
		return err
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	return h.RouteReplace(&netlink.Route{Dst: prefixIPNet(other.PodCIDR.Masked()), Gw: other.IP.AsSlice(), LinkIndex: eth.Attrs().Index})
}

// Run runs a process of the caller's in the node's namespace (for
// example a tunnel built by hand) until Stop or the bed's Close.
func (n *PlainNode) Run(ctx context.Context, name string, env []string, args ...string) (*Process, error) {
	p := n.b.newProc(n.Name+"/"+name, n.NetNS, "", args...)
	p.env = env
	if err := n.b.start(p); err != nil {
		return nil, err
	}
	return &Process{p: p}, nil
}

// DeviceName is a network device name unique to this bed run (at most 15
// bytes for a suffix of up to 8).
func (b *Bed) DeviceName(suffix string) string { return "wg" + b.run + "-" + suffix }

// Process is a process the caller runs on the bed.
type Process struct{ p *proc }

// Stop ends the process (SIGTERM, then SIGKILL).
func (p *Process) Stop() error { return p.p.stop() }

// Running reports whether the process runs, or why it stopped, with the
// tail of its log.
func (p *Process) Running() error {
	if ok, why := p.p.running(); !ok {
		return p.p.failure(why)
	}
	return nil
}
