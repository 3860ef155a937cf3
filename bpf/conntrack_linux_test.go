package bpf

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// A tracked flow outlives the rule that allowed it only for its lifetime.
func TestConntrackLifetime(t *testing.T) { forEachFamily(t, testConntrackLifetime) }

func testConntrackLifetime(t *testing.T, family int) {
	const lifetime = time.Second
	e := newPolicyEnvFor(t, envOpts{Options: Options{CTTimeoutOther: lifetime}, Family: family})
	must(t, e.d.SetPolicy(epB, []PolicyRule{{Identity: idA, Ingress: true, Proto: ProtoUDP, Port: 5353}}))

	var c net.Conn
	must(t, inNS(e.a.ns, func() (err error) {
		c, err = net.Dial("udp", netip.AddrPortFrom(e.b.ip, 5353).String())
		return err
	}))
	defer c.Close()
	must(t, echoWithTimeout(c, "one", 2*time.Second))

	must(t, e.d.SetPolicy(epB, nil))
	must(t, echoWithTimeout(c, "tracked", 2*time.Second))

	// Idle for longer than the lifetime: the entry has expired and the
	// next packet is a new flow, which the empty policy drops.
	time.Sleep(lifetime + 500*time.Millisecond)
	before := e.metric(t, true, ReasonPolicyDenied)
	if err := echoWithTimeout(c, "expired", dialTimeout); err == nil {
		t.Fatal("packet of an expired flow passed")
	}
	e.waitDrop(t, true, ReasonPolicyDenied, before, "a drop counted for the expired flow")
}
