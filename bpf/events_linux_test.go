package bpf

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// waitEvent reads events until match accepts one.
func waitEvent(ctx context.Context, t *testing.T, r *EventReader, match func(Event) bool) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		ev, err := r.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for event: %v", err)
		}
		if match(ev) {
			return ev
		}
	}
}

func TestEvents(t *testing.T) { forEachFamily(t, testEvents) }

func testEvents(t *testing.T, family int) {
	e := newPolicyEnvFor(t, envOpts{Family: family})
	r, err := e.d.Events()
	must(t, err)
	defer r.Close()
	must(t, e.d.SetPolicy(epB, []PolicyRule{
		{Identity: idA, Ingress: true, Proto: ProtoTCP, Port: 8080},
		{Identity: idA, Ingress: true, Proto: ProtoTCP, Port: 8081, Deny: true},
	}))

	e.expectTCP(t, 8080, true, 0)
	ev := waitEvent(t.Context(), t, r, func(ev Event) bool {
		return ev.Verdict == Allowed && ev.Ingress && ev.Dst.Port() == 8080
	})
	want := Event{
		Verdict: Allowed, Reason: ReasonPolicyAllow, Ingress: true, EndpointID: epB,
		SrcIdentity: idA, DstIdentity: idB, Proto: ProtoTCP, TCPFlags: TCPFlagSYN, Ifindex: e.b.ifindex,
		Dst: netip.AddrPortFrom(e.b.ip, 8080),
	}
	checkEvent(t, ev, want, e.a.ip)
	client := ev.Src

	// The first reply of the reported flow (the SYN-ACK) is reported as a
	// reply where it leaves B and where it reaches A, once each.
	isReply := func(ingress bool) func(Event) bool {
		return func(ev Event) bool { return ev.Reply && ev.Ingress == ingress && ev.Dst == client }
	}
	reply := Event{
		Verdict: Allowed, Reason: ReasonCTReply, Reply: true, EndpointID: epB,
		SrcIdentity: idB, DstIdentity: idA, Proto: ProtoTCP, TCPFlags: TCPFlagSYN | TCPFlagACK, Ifindex: e.b.ifindex,
		Dst: client,
	}
	checkEvent(t, waitEvent(t.Context(), t, r, isReply(false)), reply, e.b.ip)
	reply.Ingress, reply.EndpointID, reply.Ifindex = true, epA, e.a.ifindex
	checkEvent(t, waitEvent(t.Context(), t, r, isReply(true)), reply, e.b.ip)

	e.expectTCP(t, 8081, false, ReasonPolicyDenyRule)
	ev = waitEvent(t.Context(), t, r, func(ev Event) bool { return ev.Verdict == Dropped })
	want.Verdict, want.Reason, want.Dst = Dropped, ReasonPolicyDenyRule, netip.AddrPortFrom(e.b.ip, 8081)
	checkEvent(t, ev, want, e.a.ip)

	e.expectTCP(t, 9005, false, ReasonPolicyDenied)
	ev = waitEvent(t.Context(), t, r, func(ev Event) bool { return ev.Verdict == Dropped && ev.Dst.Port() == 9005 })
	want.Reason, want.Dst = ReasonPolicyDenied, netip.AddrPortFrom(e.b.ip, 9005)
	checkEvent(t, ev, want, e.a.ip)

	// Egress drops carry the endpoint's identity as source.
	must(t, e.d.SetPolicy(epA, nil))
	if c, err := dial(e.a, netip.AddrPortFrom(e.b.ip, 8080), dialTimeout); err == nil {
		c.Close()
		t.Fatal("want dropped by A's egress policy")
	}
	ev = waitEvent(t.Context(), t, r, func(ev Event) bool { return ev.Verdict == Dropped && !ev.Ingress })
	want = Event{
		Verdict: Dropped, Reason: ReasonPolicyDenied, EndpointID: epA,
		SrcIdentity: idA, DstIdentity: idB, Proto: ProtoTCP, TCPFlags: TCPFlagSYN, Ifindex: e.a.ifindex,
		Dst: netip.AddrPortFrom(e.b.ip, 8080),
	}
	checkEvent(t, ev, want, e.a.ip)
}

// checkEvent compares the fields the test can know (the source port of a
// request and the time are the kernel's; a reply's source is the server's
// port).
func checkEvent(t *testing.T, got, want Event, src netip.Addr) {
	t.Helper()
	if got.Src.Addr() != src || got.Src.Port() == 0 {
		t.Errorf("event source %v, want %v:<port>", got.Src, src)
	}
	if want.Reply && got.Src.Port() != 8080 {
		t.Errorf("reply from %v, want from port 8080", got.Src)
	}
	if d := time.Since(got.Time); d < -time.Second || d > time.Minute {
		t.Errorf("event time %v is %v from now", got.Time, d)
	}
	if got.Length == 0 {
		t.Error("event length 0")
	}
	got.Src, got.Time, got.Length = netip.AddrPort{}, time.Time{}, 0
	if got != want {
		t.Errorf("event\n got %+v\nwant %+v", got, want)
	}
}

// Every drop is reported or counted as lost: with nobody reading, a flood of
// denied datagrams fills the ring buffer, and the events read afterwards
// plus those lost add up to the drops the datapath counted.
func TestEventsLost(t *testing.T) {
	t.Parallel()
	e := newPolicyEnv(t, Options{})
	r, err := e.d.Events()
	must(t, err)
	defer r.Close()
	const datagrams = 20000 // the ring buffer (1 MiB) holds about 13,000 events
	dst := netip.AddrPortFrom(e.b.ip, 5353)
	must(t, inNS(e.a.ns, func() error {
		c, err := net.Dial("udp", dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		for range datagrams {
			if _, err := c.Write([]byte("x")); err != nil {
				return err
			}
		}
		return nil
	}))
	e.waitDrop(t, true, ReasonPolicyDenied, datagrams-1, "every datagram dropped by B's ingress policy")
	drops := e.metric(t, true, ReasonPolicyDenied)

	var read uint64
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		ev, err := r.Read(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		must(t, err)
		if ev.Verdict == Dropped {
			read++
		}
	}
	lost, err := e.d.EventsLost()
	must(t, err)
	t.Logf("%d drops: %d events read, %d lost", drops, read, lost)
	if lost == 0 || read == 0 {
		t.Errorf("%d events read, %d lost: want both (the ring buffer overflowed)", read, lost)
	}
	if read+lost != drops {
		t.Errorf("%d events read + %d lost = %d, want the %d drops counted", read, lost, read+lost, drops)
	}
}

// With allowed flows not sampled at all (TraceSample < 0), drops are still
// every one reported, and nothing else is.
func TestEventsDropsNeverSampled(t *testing.T) {
	t.Parallel()
	e := newPolicyEnvFor(t, envOpts{Options: Options{TraceSample: -1}, Family: 4})
	r, err := e.d.Events()
	must(t, err)
	defer r.Close()
	must(t, e.d.SetPolicy(epB, []PolicyRule{{Identity: idA, Ingress: true, Proto: ProtoTCP, Port: 8080}}))
	e.expectTCP(t, 8080, true, 0)
	e.expectTCP(t, 9005, false, ReasonPolicyDenied)
	ev := waitEvent(t.Context(), t, r, func(Event) bool { return true })
	if ev.Verdict != Dropped || ev.Dst.Port() != 9005 {
		t.Fatalf("first event %+v, want the drop (the allowed connection is not sampled)", ev)
	}
}
