package bpf

import (
	"context"
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
		SrcIdentity: idA, DstIdentity: idB, Proto: ProtoTCP, Ifindex: e.b.ifindex,
		Dst: netip.AddrPortFrom(e.b.ip, 8080),
	}
	checkEvent(t, ev, want, e.a.ip)

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
		SrcIdentity: idA, DstIdentity: idB, Proto: ProtoTCP, Ifindex: e.a.ifindex,
		Dst: netip.AddrPortFrom(e.b.ip, 8080),
	}
	checkEvent(t, ev, want, e.a.ip)
}

// checkEvent compares the fields the test can know (the source port and the
// time are the kernel's).
func checkEvent(t *testing.T, got, want Event, src netip.Addr) {
	t.Helper()
	if got.Src.Addr() != src || got.Src.Port() == 0 {
		t.Errorf("event source %v, want %v:<ephemeral>", got.Src, src)
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
