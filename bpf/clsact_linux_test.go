package bpf

import (
	"net/netip"
	"strings"
	"testing"
)

// With clsact, the filters outlive the process: a restarted datapath sees
// them as not attached (they run the previous process's program) until it
// replaces them, which keeps established connections; Detach removes them.
func TestClsactRestartAndDetach(t *testing.T) {
	t.Parallel()
	pinDir := newBPFFS(t)
	e := newPolicyEnv(t, Options{PinDir: pinDir, TCAttach: TCAttachClsact})
	must(t, e.d.SetPolicy(epB, []PolicyRule{{Identity: idA, Ingress: true, Proto: ProtoTCP, Port: 8080}}))
	attached := func(d *Datapath) map[int]uint16 {
		var got map[int]uint16
		must(t, inNS(e.topo.node, func() (err error) {
			got, err = d.AttachedEndpoints()
			return err
		}))
		return got
	}
	if got := attached(e.d); got[e.a.ifindex] != epA || got[e.b.ifindex] != epB || len(got) != 2 {
		t.Fatalf("AttachedEndpoints = %v, want A and B", got)
	}
	c, err := dial(e.a, netip.AddrPortFrom(e.b.ip, 8080), dialTimeout*5)
	must(t, err)
	defer c.Close()
	must(t, echo(c, "before"))

	must(t, e.d.Close())
	must(t, echo(c, "while-down"))
	d2 := load(t, Options{PinDir: pinDir, TCAttach: TCAttachClsact})
	e.d = d2
	if got := attached(d2); len(got) != 0 {
		t.Fatalf("AttachedEndpoints after a restart = %v, want none (the filters run the previous programs)", got)
	}
	e.topo.attach(t, d2, e.a, epA)
	e.topo.attach(t, d2, e.b, epB)
	if got := attached(d2); len(got) != 2 {
		t.Fatalf("AttachedEndpoints after attaching again = %v", got)
	}
	must(t, echo(c, "after-replace"))
	e.expectTCP(t, 8081, false, ReasonPolicyDenied)

	// Detach: B's traffic is no longer seen (a port no rule allows works).
	must(t, inNS(e.topo.node, func() error { return d2.DetachEndpoint(e.b.ifindex) }))
	must(t, inNS(e.topo.node, func() error { return d2.DetachEndpoint(e.b.ifindex) })) // twice: fine
	if got := attached(d2); len(got) != 1 || got[e.a.ifindex] != epA {
		t.Fatalf("AttachedEndpoints after detaching B = %v", got)
	}
	e.expectTCP(t, 8081, true, 0)
}

func TestTCAttachModeValidated(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	_, err := Load(Options{PinDir: newBPFFS(t), TCAttach: "xdp"})
	if err == nil || !strings.Contains(err.Error(), `tc attach mode "xdp"`) {
		t.Fatalf("Load with an unknown attach mode: %v", err)
	}
}
