package bpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
)

// Packets no socket of this machine can send (SCTP: the kernel has no SCTP
// sockets; IPv6 extension headers, fragments) are checked by running the
// tc program on crafted frames (BPF_PROG_TEST_RUN), as the packet towards
// an endpoint (its ingress), with the verdict and the reason it counted.

const (
	tcActUnspec = 0xffffffff // TC_ACT_UNSPEC (-1): passed on
	tcActShot   = 2          // TC_ACT_SHOT: dropped

	nextHop, nextRouting, nextFragment, nextDest, nextICMPv6 = 0, 43, 44, 60, 58
)

// frame6 is an Ethernet frame with an IPv6 header from src to dst, the
// extension headers exts (each {next header's own type, bytes}) and the L4
// header l4 of protocol proto.
func frame6(src, dst netip.Addr, exts [][]byte, proto uint8, l4 []byte) []byte {
	f := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd}
	next := proto
	if len(exts) > 0 {
		next = exts[0][0]
	}
	payload := len(l4)
	for _, e := range exts {
		payload += len(e) - 1
	}
	f = append(f, 0x60, 0, 0, 0, byte(payload>>8), byte(payload), next, 64)
	f = append(f, src.AsSlice()...)
	f = append(f, dst.AsSlice()...)
	for i, e := range exts {
		n := proto
		if i+1 < len(exts) {
			n = exts[i+1][0]
		}
		f = append(append(f, n), e[1:]...)
	}
	return append(f, l4...)
}

// frame4 is an Ethernet frame with an IPv4 header from src to dst and the
// L4 header l4 of protocol proto.
func frame4(src, dst netip.Addr, proto uint8, l4 []byte) []byte {
	f := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00}
	total := 20 + len(l4)
	f = append(f, 0x45, 0, byte(total>>8), byte(total), 0, 1, 0x40, 0, 64, proto, 0, 0)
	f = append(f, src.AsSlice()...)
	f = append(f, dst.AsSlice()...)
	return append(f, l4...)
}

// optsHeader is an empty hop-by-hop, routing or destination options
// header of type typ (8 bytes, PadN).
func optsHeader(typ uint8) []byte { return []byte{typ, 0, 1, 4, 0, 0, 0, 0} }

// fragHeader is a fragment header at offset (in 8-byte units).
func fragHeader(offset uint16) []byte {
	return []byte{nextFragment, 0, byte(offset >> 5), byte(offset << 3), 0, 0, 0, 1}
}

// sourcePorts gives each crafted flow its own source port, so that no
// packet is the conntrack entry of an earlier one.
var sourcePorts atomic.Uint32

func nextSourcePort() uint16 { return uint16(40000 + sourcePorts.Add(1)) }

func tcpSYN(dport uint16) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], nextSourcePort())
	binary.BigEndian.PutUint16(h[2:], dport)
	h[12], h[13] = 0x50, 0x02
	return h
}

func sctpInit(dport uint16) []byte {
	h := make([]byte, 12+20)
	binary.BigEndian.PutUint16(h[0:], nextSourcePort())
	binary.BigEndian.PutUint16(h[2:], dport)
	h[12] = 1 // INIT chunk
	return h
}

func icmpv6(typ uint8) []byte { return append([]byte{typ, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 16)...) }

func TestCraftedPackets(t *testing.T) {
	t.Parallel()
	d := load(t, Options{PinDir: newBPFFS(t)})
	// The program finds the endpoint by the packet's interface: a veth in
	// a namespace of the test's own.
	ns := newNS(t, nil)
	var ifindex int
	must(t, inNS(ns, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ep0"}, PeerName: "ep1"}); err != nil {
			return err
		}
		l, err := netlink.LinkByName("ep0")
		if err != nil {
			return err
		}
		ifindex = l.Attrs().Index
		return netlink.LinkSetUp(l)
	}))
	const ep = 7
	peer6, pod6 := netip.MustParseAddr("fd00::a"), netip.MustParseAddr("fd00::b")
	peer4, pod4 := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")
	must(t, d.tc.Endpoints.Update(uint32(ifindex), uint16(ep), ebpf.UpdateAny))
	must(t, d.EndpointConfigs().Update(ep, EndpointConfig{Identity: idB, EnforceIngress: true}))
	for _, a := range []netip.Addr{peer6, peer4} {
		must(t, d.IPCache().Update(hostPrefix(a), IPCacheValue{Identity: idA}))
	}
	must(t, d.SetPolicy(ep, []PolicyRule{
		{Identity: idA, Ingress: true, Proto: ProtoTCP, Port: 8080},
		{Identity: idA, Ingress: true, Proto: ProtoSCTP, Port: 9000},
	}))

	hbh, dst, rt := optsHeader(nextHop), optsHeader(nextDest), optsHeader(nextRouting)
	for _, tc := range []struct {
		name   string
		frame  []byte
		ret    uint32
		reason Reason
	}{
		{"IPv6 TCP to an allowed port", frame6(peer6, pod6, nil, ProtoTCP, tcpSYN(8080)), tcActUnspec, ReasonPolicyAllow},
		{"IPv6 TCP to another port", frame6(peer6, pod6, nil, ProtoTCP, tcpSYN(8081)), tcActShot, ReasonPolicyDenied},
		{"IPv6 TCP after hop-by-hop, routing and destination options, allowed port",
			frame6(peer6, pod6, [][]byte{hbh, rt, dst}, ProtoTCP, tcpSYN(8080)), tcActUnspec, ReasonPolicyAllow},
		{"IPv6 TCP after hop-by-hop, routing and destination options, other port",
			frame6(peer6, pod6, [][]byte{hbh, rt, dst}, ProtoTCP, tcpSYN(8081)), tcActShot, ReasonPolicyDenied},
		{"IPv6 first fragment: its ports decide", frame6(peer6, pod6, [][]byte{fragHeader(0)}, ProtoTCP, tcpSYN(8080)), tcActUnspec, ReasonPolicyAllow},
		{"IPv6 later fragment: no ports, no port rule matches",
			frame6(peer6, pod6, [][]byte{fragHeader(100)}, ProtoTCP, tcpSYN(8080)), tcActShot, ReasonPolicyDenied},
		{"IPv6 with more extension headers than parsed", frame6(peer6, pod6,
			[][]byte{hbh, dst, rt, dst, rt, dst, dst}, ProtoTCP, tcpSYN(8080)), tcActShot, ReasonExtHeaders},
		{"IPv6 truncated extension header", frame6(peer6, pod6, [][]byte{{nextHop, 0}}, ProtoTCP, nil), tcActShot, ReasonInvalidPacket},
		{"IPv6 SCTP to an allowed port", frame6(peer6, pod6, nil, ProtoSCTP, sctpInit(9000)), tcActUnspec, ReasonPolicyAllow},
		{"IPv6 SCTP to another port", frame6(peer6, pod6, nil, ProtoSCTP, sctpInit(9001)), tcActShot, ReasonPolicyDenied},
		{"IPv4 SCTP to an allowed port", frame4(peer4, pod4, ProtoSCTP, sctpInit(9000)), tcActUnspec, ReasonPolicyAllow},
		{"IPv4 SCTP to another port", frame4(peer4, pod4, ProtoSCTP, sctpInit(9001)), tcActShot, ReasonPolicyDenied},
		{"ICMPv6 neighbour solicitation, no rule", frame6(peer6, pod6, nil, nextICMPv6, icmpv6(135)), tcActUnspec, ReasonICMPv6Link},
		{"ICMPv6 MLDv2 report after hop-by-hop, no rule", frame6(peer6, pod6, [][]byte{hbh}, nextICMPv6, icmpv6(143)), tcActUnspec, ReasonICMPv6Link},
		{"ICMPv6 echo request, no rule", frame6(peer6, pod6, nil, nextICMPv6, icmpv6(128)), tcActShot, ReasonPolicyDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := reasonCount(t, d, tc.reason)
			var ret uint32
			must(t, inNS(ns, func() (err error) {
				ctx := make([]byte, skbSize)
				binary.LittleEndian.PutUint32(ctx[skbIfindexOffset:], uint32(ifindex))
				ret, err = d.tc.ToEndpoint.Run(&ebpf.RunOptions{Data: tc.frame, Context: ctx})
				return err
			}))
			if ret != tc.ret {
				t.Errorf("verdict %#x, want %#x", ret, tc.ret)
			}
			if got := reasonCount(t, d, tc.reason); got != before+1 {
				t.Errorf("ingress %v counted %d packets, want %d", tc.reason, got-before, 1)
			}
		})
	}
}

// The offset of ifindex in struct __sk_buff, and its size.
const (
	skbIfindexOffset = 40
	skbSize          = 192
)

func reasonCount(t *testing.T, d *Datapath, r Reason) uint64 {
	t.Helper()
	m, err := d.Metrics()
	if err != nil {
		t.Fatal(fmt.Errorf("metrics: %w", err))
	}
	return m[MetricKey{Ingress: true, Reason: r}].Packets
}
