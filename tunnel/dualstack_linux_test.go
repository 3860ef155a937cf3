package tunnel_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/agent/datapath"
)

// dualNode is a node of newDualPair: node (its IPv4 half, as newPair
// builds it) plus an IPv6 underlay address, pod CIDR and pod address.
type dualNode struct {
	*node
	nodeIP6, podIP6, podCIDR6 string
}

// newDualPair builds newPair's topology in both families:
//
//	pod-a (10.11.0.10, fd00:11::10) -- a (ul0: 192.168.77.1, fd00:77::1) == b (ul0: 192.168.77.2, fd00:77::2) -- pod-b (10.12.0.10, fd00:12::10)
//
// with IPv4 and IPv6 forwarding on in both nodes and no route between the
// pod CIDRs of either family. Addresses skip duplicate address detection,
// so that they are usable at once.
func newDualPair(t *testing.T) (a, b *dualNode) {
	t.Helper()
	p := newPair(t)
	mk := func(n *node, i int) *dualNode {
		d := &dualNode{node: n, nodeIP6: fmt.Sprintf("fd00:77::%d", i), podIP6: fmt.Sprintf("fd00:1%d::10", i), podCIDR6: fmt.Sprintf("fd00:1%d::/64", i)}
		ip(t, "-n", n.name, "-6", "addr", "add", fmt.Sprintf("fd00:1%d::1/64", i), "dev", "pod0", "nodad")
		ip(t, "-n", n.name+"p", "-6", "addr", "add", d.podIP6+"/64", "dev", "eth0", "nodad")
		ip(t, "-n", n.name+"p", "-6", "route", "add", "default", "via", fmt.Sprintf("fd00:1%d::1", i))
		ip(t, "-n", n.name, "-6", "addr", "add", d.nodeIP6+"/64", "dev", "ul0", "nodad")
		out, err := exec.Command("ip", "netns", "exec", n.name, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1").CombinedOutput()
		if err != nil {
			t.Fatalf("enable IPv6 forwarding in %s: %v: %s", n.name, err, out)
		}
		return d
	}
	return mk(p.a, 1), mk(p.b, 2)
}

// peer is n as a peer of the other node, dual-stack, with its endpoint in
// the given family.
func (n *dualNode) peer(ipv6 bool) datapath.Peer {
	ep := n.nodeIP
	if ipv6 {
		ep = n.nodeIP6
	}
	return datapath.Peer{
		Cluster: "c1", Node: n.name, NodeIP: netip.MustParseAddr(ep),
		PodCIDRs:        []netip.Prefix{netip.MustParsePrefix(n.podCIDR), netip.MustParsePrefix(n.podCIDR6)},
		WireguardPubKey: n.dev.PublicKey(),
	}
}

// Dual-stack pods through WireGuard, over an IPv4 and over an IPv6
// underlay: pod-to-pod TCP of both families goes through the tunnel, the
// underlay carries only WireGuard UDP ([fd00:77::2]:port for the IPv6
// endpoint), and List gives the dual-stack peer back as written, IPv6
// endpoint included. Changing the endpoint's family keeps both families
// of pods connected.
func TestDualStackPodToPod(t *testing.T) {
	requireRoot(t)
	a, b := newDualPair(t)
	a.start(t)
	b.start(t)
	for _, pod := range []string{b.podIP, "[" + b.podIP6 + "]", a.podIP, "[" + a.podIP6 + "]"} {
		ns := b.podNS
		if pod == a.podIP || pod == "["+a.podIP6+"]" {
			ns = a.podNS
		}
		echoServer(t, ns, pod+":7000")
	}
	if err := echo(t, a.podNS, "["+b.podIP6+"]:7000", []byte("x")); err == nil {
		t.Fatal("IPv6 pods reach each other before any peer is configured: the test topology routes around the tunnel")
	}
	for _, underlay6 := range []bool{true, false} {
		t.Run(fmt.Sprintf("IPv6 endpoint %v", underlay6), func(t *testing.T) {
			for _, pr := range []struct {
				on, of *dualNode
			}{{a, b}, {b, a}} {
				if err := pr.on.dev.Peers().Update(t.Context(), keyOf(pr.of.node), pr.of.peer(underlay6)); err != nil {
					t.Fatalf("on %s: Update %s: %v", pr.on.name, keyOf(pr.of.node), err)
				}
			}
			expectPeers(t, a.node, map[string]datapath.Peer{keyOf(b.node): b.peer(underlay6)})
			for fam, dst := range map[string]string{"-6": b.podCIDR6, "-4": b.podCIDR} {
				out, err := exec.Command("ip", "-n", a.name, fam, "route", "show", dst).CombinedOutput()
				if err != nil || !bytes.Contains(out, []byte("dev "+a.cfg.Name)) {
					t.Fatalf("route to %s on %s: %q, %v; want one through %s", dst, a.name, out, err, a.cfg.Name)
				}
			}
			marker := []byte(fmt.Sprintf("CLUSTERMESH-PLAINTEXT-MARKER-%v", underlay6))
			msg := bytes.Repeat(marker, 200)
			underlay := startCapture(t, a.ns, "ul0")
			podSide := startCapture(t, a.ns, "pod0")
			for _, c := range []struct{ from, to string }{
				{a.podNS, "[" + b.podIP6 + "]:7000"}, {b.podNS, "[" + a.podIP6 + "]:7000"},
				{a.podNS, b.podIP + ":7000"}, {b.podNS, a.podIP + ":7000"},
			} {
				if err := echo(t, c.from, c.to, msg); err != nil {
					t.Fatalf("pod -> %s through the tunnel: %v", c.to, err)
				}
			}
			checkEncryptedFamilies(t, underlay.Stop(), podSide.Stop(), marker, uint16(a.dev.ListenPort()), underlay6)
		})
	}
}

// checkEncryptedFamilies is checkEncrypted over an underlay of either
// family: every IP packet on the underlay is WireGuard UDP (in the
// endpoint's family, at least one), none carries the marker, and the pod
// side saw it in clear.
func checkEncryptedFamilies(t *testing.T, underlay, podSide [][]byte, marker []byte, port uint16, ipv6 bool) {
	t.Helper()
	seen := 0
	for _, f := range podSide {
		if bytes.Contains(f, marker) {
			seen++
		}
	}
	if seen == 0 {
		t.Fatalf("capture on the pod veth saw %d frames, none with the marker: the capture does not work", len(podSide))
	}
	wg := 0
	for _, f := range underlay {
		if bytes.Contains(f, marker) {
			t.Fatalf("plaintext marker on the underlay: %x", f)
		}
		h, ok := parseIPv4(f)
		if !ok {
			h, ok = parseIPv6(f)
		}
		if !ok || h.proto == unix.IPPROTO_ICMPV6 || h.proto == unix.IPPROTO_HOPOPTS && h.dst.IsMulticast() {
			continue // ARP, neighbour discovery, MLD
		}
		if h.proto != unix.IPPROTO_UDP || (h.srcPort != port && h.dstPort != port) {
			t.Fatalf("underlay packet %v -> %v proto %d ports %d->%d: not WireGuard", h.src, h.dst, h.proto, h.srcPort, h.dstPort)
		}
		if (h.src.To4() == nil) == ipv6 {
			wg++
		}
	}
	if wg == 0 {
		t.Fatalf("no WireGuard packets of the endpoint's family among %d underlay frames", len(underlay))
	}
	t.Logf("underlay: %d WireGuard UDP packets (IPv6 %v), no plaintext; pod side: %d frames with the marker", wg, ipv6, seen)
}

// parseIPv6 reads an Ethernet frame with an IPv6 packet whose next header
// is the transport (no extension headers: the test's traffic has none).
func parseIPv6(frame []byte) (ipv4, bool) {
	if len(frame) < 14+40 || binary.BigEndian.Uint16(frame[12:14]) != unix.ETH_P_IPV6 {
		return ipv4{}, false
	}
	p := frame[14:]
	h := ipv4{src: net.IP(p[8:24]), dst: net.IP(p[24:40]), proto: p[6]}
	if (h.proto == unix.IPPROTO_UDP || h.proto == unix.IPPROTO_TCP) && len(p) >= 44 {
		h.srcPort = binary.BigEndian.Uint16(p[40:])
		h.dstPort = binary.BigEndian.Uint16(p[42:])
	}
	return h, true
}
