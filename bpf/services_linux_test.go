package bpf

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
)

func decodeResults(t *testing.T, out []byte) []helperResult {
	t.Helper()
	var rs []helperResult
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var r helperResult
		must(t, dec.Decode(&r))
		rs = append(rs, r)
	}
	return rs
}

// The socket load balancer over each family: an IPv4 frontend from IPv4
// sockets, an IPv6 frontend from IPv6 sockets, and an IPv4 frontend from
// IPv6 sockets through its IPv4-mapped address.
func TestServiceLoadBalancing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, lo string
		fe       netip.Addr
		dial     func(netip.Addr) netip.Addr // the address the client uses
	}{
		{"IPv4", "127.0.0.1", netip.MustParseAddr("10.96.0.10"), func(a netip.Addr) netip.Addr { return a }},
		{"IPv6", "::1", netip.MustParseAddr("fd00:96::10"), func(a netip.Addr) netip.Addr { return a }},
		{"IPv4-mapped", "127.0.0.1", netip.MustParseAddr("10.96.0.10"), func(a netip.Addr) netip.Addr { return netip.AddrFrom16(a.As16()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testServiceLoadBalancing(t, tc.lo, tc.fe, tc.dial)
		})
	}
}

func testServiceLoadBalancing(t *testing.T, lo string, feAddr netip.Addr, dial func(netip.Addr) netip.Addr) {
	d := load(t, Options{PinDir: newBPFFS(t)})
	cg := newCgroup(t)
	must(t, d.AttachCgroup(cg))

	b1, b2, other := backendServerOn(t, lo), backendServerOn(t, lo), backendServerOn(t, lo)
	mapped := func(a netip.AddrPort) string { return netip.AddrPortFrom(dial(a.Addr()), a.Port()).String() }
	configured := map[string]bool{mapped(b1): true, mapped(b2): true}
	backends := []Backend{{Addr: b1.Addr(), Port: b1.Port()}, {Addr: b2.Addr(), Port: b2.Port()}}
	tcpFE := Frontend{Addr: feAddr, Port: 80, Proto: ProtoTCP}
	udpFE := Frontend{Addr: feAddr, Port: 53, Proto: ProtoUDP}
	must(t, d.Services().Update(tcpFE, backends))
	must(t, d.Services().Update(udpFE, backends))
	// Idempotent, and a service that must not be used.
	must(t, d.Services().Update(tcpFE, backends))
	otherFE := Frontend{Addr: feAddr.Next(), Port: 80, Proto: ProtoTCP}
	must(t, d.Services().Update(otherFE, []Backend{{Addr: other.Addr(), Port: other.Port()}}))

	got, err := d.Services().List()
	must(t, err)
	if diff := cmp.Diff(backends, got[tcpFE], cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Fatalf("Services().List() (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		mode string
		fe   Frontend
	}{{"tcp", tcpFE}, {"udp", udpFE}} {
		t.Run(tc.mode, func(t *testing.T) {
			fe := netip.AddrPortFrom(dial(tc.fe.Addr), tc.fe.Port).String()
			seen := map[string]int{}
			for _, r := range decodeResults(t, runInCgroup(t, cg, tc.mode, fe, "40")) {
				reply := mapped(netip.MustParseAddrPort(r.Reply))
				if !configured[reply] {
					t.Fatalf("answered by %s, not a configured backend of %v", r.Reply, tc.fe)
				}
				if r.Peer != fe {
					t.Fatalf("peer address %s, want the frontend %s", r.Peer, fe)
				}
				seen[r.Reply]++
			}
			// 40 random (TCP) or per-socket (UDP) picks miss a backend
			// with probability 2^-39.
			if len(seen) != 2 {
				t.Fatalf("backends used: %v, want both", seen)
			}
		})
	}

	// One backend left: all connections go to it.
	must(t, d.Services().Update(tcpFE, backends[:1]))
	for _, r := range decodeResults(t, runInCgroup(t, cg, "tcp", netip.AddrPortFrom(dial(feAddr), 80).String(), "10")) {
		if r.Reply != b1.String() {
			t.Fatalf("answered by %s after the service shrank to %s", r.Reply, b1)
		}
	}

	must(t, d.Services().Delete(tcpFE))
	must(t, d.Services().Delete(tcpFE))
	if got, err := d.Services().List(); err != nil || len(got[tcpFE]) != 0 || len(got[udpFE]) != 2 {
		t.Fatalf("after deleting %v: %v, %v", tcpFE, got, err)
	}
	must(t, d.DetachCgroup(cg))
}

// Connected sockets keep their reverse translation in a slot of
// lb4_revnat_sk; one whose slot another socket holds falls back to the
// lb4_revnat map. Either way getpeername returns the frontend, and closing
// the socket frees what it used.
func TestServiceReverseTranslationSlots(t *testing.T) {
	t.Parallel()
	d := load(t, Options{PinDir: newBPFFS(t)})
	cg := newCgroup(t)
	must(t, d.AttachCgroup(cg))
	b := backendServer(t)
	fe := Frontend{Addr: netip.MustParseAddr("10.96.0.30"), Port: 80, Proto: ProtoTCP}
	must(t, d.Services().Update(fe, []Backend{{Addr: b.Addr(), Port: b.Port()}}))

	used := func() (slots, lru int) {
		var (
			k uint32
			v sockRevnatSlot
		)
		it := d.sock.Lb4RevnatSk.Iterate()
		for it.Next(&k, &v) {
			if v.Cookie != 0 {
				slots++
			}
		}
		must(t, it.Err())
		var (
			rk sockRevnatKey
			rv sockRevnatValue
		)
		it = d.sock.Lb4Revnat.Iterate()
		for it.Next(&rk, &rv) {
			lru++
		}
		must(t, it.Err())
		return slots, lru
	}
	check := func(what string) {
		t.Helper()
		for _, r := range decodeResults(t, runInCgroup(t, cg, "tcp", "10.96.0.30:80", "20")) {
			if r.Peer != "10.96.0.30:80" || r.Reply != b.String() {
				t.Fatalf("%s: peer %s answered by %s, want peer 10.96.0.30:80 answered by %s", what, r.Peer, r.Reply, b)
			}
		}
	}
	check("free slots")
	if s, l := used(); s != 0 || l != 0 {
		t.Fatalf("after the sockets closed: %d slots and %d lb4_revnat entries still held", s, l)
	}

	// Every slot held by some other socket: the fallback.
	n := int(d.sock.Lb4RevnatSk.MaxEntries())
	keys := make([]uint32, n)
	vals := make([]sockRevnatSlot, n)
	for i := range keys {
		keys[i], vals[i] = uint32(i), sockRevnatSlot{Cookie: 1<<63 | uint64(i)}
	}
	_, err := d.sock.Lb4RevnatSk.BatchUpdate(keys, vals, nil)
	must(t, err)
	check("slots taken")
	if s, l := used(); s != n || l != 0 {
		t.Fatalf("after the sockets closed: %d of %d foreign slots left, %d lb4_revnat entries still held", s, n, l)
	}
}

// IPv6 sockets keep their reverse translation in lb6_revnat (lb4_revnat
// for an IPv4-mapped frontend); closing them frees it.
func TestServiceReverseTranslationIPv6(t *testing.T) {
	t.Parallel()
	d := load(t, Options{PinDir: newBPFFS(t)})
	cg := newCgroup(t)
	must(t, d.AttachCgroup(cg))
	b6, b4 := backendServerOn(t, "::1"), backendServer(t)
	must(t, d.Services().Update(Frontend{Addr: netip.MustParseAddr("fd00:96::30"), Port: 80, Proto: ProtoTCP}, []Backend{{Addr: b6.Addr(), Port: b6.Port()}}))
	must(t, d.Services().Update(Frontend{Addr: netip.MustParseAddr("10.96.0.31"), Port: 80, Proto: ProtoTCP}, []Backend{{Addr: b4.Addr(), Port: b4.Port()}}))
	entries := func(m *ebpf.Map) int {
		n := 0
		it := m.Iterate()
		k, v := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
		for it.Next(&k, &v) {
			n++
		}
		must(t, it.Err())
		return n
	}
	for _, fe := range []string{"[fd00:96::30]:80", "[::ffff:10.96.0.31]:80"} {
		for _, r := range decodeResults(t, runInCgroup(t, cg, "tcp", fe, "20")) {
			if r.Peer != fe {
				t.Fatalf("peer %s, want the frontend %s", r.Peer, fe)
			}
		}
	}
	if n6, n4 := entries(d.sock.Lb6Revnat), entries(d.sock.Lb4Revnat); n6 != 0 || n4 != 0 {
		t.Fatalf("after the sockets closed: %d lb6_revnat and %d lb4_revnat entries still held", n6, n4)
	}
	// Connected sockets used the slot arrays (IPv4-mapped ones the IPv4
	// array) and freed them.
	held := func(m *ebpf.Map) int {
		n := 0
		it := m.Iterate()
		var k uint32
		v := make([]byte, m.ValueSize())
		for it.Next(&k, &v) {
			if binary.LittleEndian.Uint64(v[:8]) != 0 {
				n++
			}
		}
		must(t, it.Err())
		return n
	}
	if s6, s4 := held(d.sock.Lb6RevnatSk), held(d.sock.Lb4RevnatSk); s6 != 0 || s4 != 0 {
		t.Fatalf("after the sockets closed: %d lb6_revnat_sk and %d lb4_revnat_sk slots still held", s6, s4)
	}
}
