package bpf

import (
	"fmt"
	"net/netip"
	"os"
	"testing"
)

// A client in pod A, in the cgroup the socket programs are attached to,
// reaches pod B through Service frontends. The events of A's egress (where
// the packet still carries the client's socket) name the frontend that the
// socket load balancer translated into B's address: a connected TCP socket
// (its translation in a slot), an IPv6 socket to an IPv4-mapped frontend,
// an unconnected UDP socket (the LRU), and a connection A's egress policy
// drops. B's ingress event of the same
// connection has none (routing in the node orphans the packet), nor does a
// connection to B's own address from the same client.
func TestServiceFrontendInEvents(t *testing.T) { forEachFamily(t, testServiceFrontendInEvents) }

func testServiceFrontendInEvents(t *testing.T, family int) {
	e := newPolicyEnvFor(t, envOpts{Family: family})
	cg := newCgroup(t)
	must(t, e.d.AttachCgroup(cg))
	r, err := e.d.Events()
	must(t, err)
	defer r.Close()

	feAddr := netip.MustParseAddr("10.96.0.10")
	if family == 6 {
		feAddr = netip.MustParseAddr("fd00:96::10")
	}
	fe := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(feAddr, port) }
	be := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(e.b.ip, port) }
	for _, s := range []struct {
		fe    uint16
		proto uint8
		be    uint16
	}{{80, ProtoTCP, 8080}, {53, ProtoUDP, 5353}, {82, ProtoTCP, 9011}} {
		must(t, e.d.Services().Update(Frontend{Addr: feAddr, Port: s.fe, Proto: s.proto},
			[]Backend{{Addr: e.b.ip, Port: s.be}}))
	}
	// A may reach B on 8080/TCP and 5353/UDP only; B accepts both.
	must(t, e.d.SetPolicy(epA, []PolicyRule{
		{Identity: idB, Proto: ProtoTCP, Port: 8080},
		{Identity: idB, Proto: ProtoUDP, Port: 5353},
	}))
	must(t, e.d.SetPolicy(epB, []PolicyRule{
		{Identity: idA, Ingress: true, Proto: ProtoTCP, Port: 8080},
		{Identity: idA, Ingress: true, Proto: ProtoUDP, Port: 5353},
	}))
	// The helper (a child process) opens A's namespace through the test
	// process's descriptor.
	netnsPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(e.a.ns))

	egress := func(dst netip.AddrPort, v Verdict) func(Event) bool {
		return func(ev Event) bool {
			return !ev.Ingress && !ev.Reply && ev.EndpointID == epA && ev.Dst == dst && ev.Verdict == v
		}
	}
	check := func(what string, ev Event, want netip.AddrPort) {
		t.Helper()
		if ev.Frontend != want {
			t.Errorf("%s: event frontend %v, want %v (event %+v)", what, ev.Frontend, want, ev)
		}
	}

	runInCgroupNetns(t, cg, netnsPath, "echo-tcp", fe(80).String(), "1")
	check("TCP through the service, A's egress", waitEvent(t.Context(), t, r, egress(be(8080), Allowed)), fe(80))
	ev := waitEvent(t.Context(), t, r, func(ev Event) bool {
		return ev.Ingress && !ev.Reply && ev.EndpointID == epB && ev.Dst == be(8080)
	})
	check("TCP through the service, B's ingress", ev, netip.AddrPort{})

	if family == 4 {
		// An IPv6 socket to the IPv4-mapped frontend: translated through
		// the IPv4 maps, the packet and its frontend are IPv4.
		mapped := netip.AddrPortFrom(netip.AddrFrom16(feAddr.As16()), 80)
		runInCgroupNetns(t, cg, netnsPath, "echo-tcp", mapped.String(), "1")
		check("TCP from an IPv6 socket to the IPv4-mapped frontend", waitEvent(t.Context(), t, r, egress(be(8080), Allowed)), fe(80))
	}

	runInCgroupNetns(t, cg, netnsPath, "echo-udp", fe(53).String(), "1")
	check("UDP through the service (sendmsg)", waitEvent(t.Context(), t, r, egress(be(5353), Allowed)), fe(53))

	runInCgroupNetns(t, cg, netnsPath, "try-tcp", fe(82).String(), "1")
	ev = waitEvent(t.Context(), t, r, egress(be(9011), Dropped))
	if ev.Reason != ReasonPolicyDenied {
		t.Errorf("drop reason %v, want %v", ev.Reason, ReasonPolicyDenied)
	}
	check("TCP through the service dropped by A's egress policy", ev, fe(82))

	// The same backend by its own address: no frontend. (The first
	// connection's conntrack entry is closed by now or still open; either
	// way a new connection has a new source port and is a new flow.)
	runInCgroupNetns(t, cg, netnsPath, "echo-tcp", be(8080).String(), "1")
	ev = waitEvent(t.Context(), t, r, egress(be(8080), Allowed))
	check("TCP to the backend's own address", ev, netip.AddrPort{})
}
