package bpf

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

const (
	idA = 1000
	idB = 2000
	epA = 1
	epB = 2
)

// policyEnv is two pods A (ep 1, identity 1000) and B (ep 2, identity 2000)
// with the datapath attached to both; B runs TCP echo servers on 8080,
// 8081 and 9005, 9011 and a UDP echo server on 5353.
type policyEnv struct {
	d    *Datapath
	topo *topology
	a, b *pod
}

func newPolicyEnv(t testing.TB, opts Options) *policyEnv {
	t.Helper()
	return newPolicyEnvFor(t, envOpts{Options: opts, Family: 4})
}

// envOpts are the datapath's options and the family of the pods' addresses
// the tests use (6: dual-stack pods, tested over IPv6).
type envOpts struct {
	Options
	Family int
}

func newPolicyEnvFor(t testing.TB, eo envOpts) *policyEnv {
	t.Helper()
	opts := eo.Options
	if opts.PinDir == "" {
		opts.PinDir = newBPFFS(t)
	}
	d := load(t, opts)
	topo := newTopologyFamily(t, 2, eo.Family)
	e := &policyEnv{d: d, topo: topo, a: topo.pods[0], b: topo.pods[1]}
	for _, p := range []struct {
		pod *pod
		ep  uint16
		id  uint32
	}{{e.a, epA, idA}, {e.b, epB, idB}} {
		must(t, d.IPCache().Update(hostPrefix(p.pod.ip4), IPCacheValue{Identity: p.id}))
		must(t, d.IPCache().Update(hostPrefix(p.pod.ip), IPCacheValue{Identity: p.id}))
		must(t, d.EndpointConfigs().Update(p.ep, EndpointConfig{Identity: p.id, EnforceIngress: true, EnforceEgress: true}))
		topo.attach(t, d, p.pod, p.ep)
	}
	// A may talk to anyone; B accepts nothing until a test says so.
	must(t, d.SetPolicy(epA, []PolicyRule{{Identity: 0}}))
	must(t, d.SetPolicy(epB, nil))
	for _, port := range []uint16{8080, 8081, 9005, 9011} {
		tcpEchoServer(t, e.b, port)
	}
	udpEchoServer(t, e.b, 5353)
	return e
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// expectTCP connects from A to B:port and checks the outcome; for a drop it
// also checks that the datapath counted one with the given reason.
func (e *policyEnv) expectTCP(t *testing.T, port uint16, allowed bool, reason Reason) {
	t.Helper()
	before := e.metric(t, true, reason)
	c, err := dial(e.a, netip.AddrPortFrom(e.b.ip, port), timeoutFor(allowed))
	if allowed {
		if err != nil {
			t.Fatalf("B:%d: want allowed, dial: %v", port, err)
		}
		defer c.Close()
		if err := echo(c, "hello"); err != nil {
			t.Fatalf("B:%d: want allowed (reply through conntrack): %v", port, err)
		}
		return
	}
	if err == nil {
		c.Close()
		t.Fatalf("B:%d: want dropped (%v), connection succeeded", port, reason)
	}
	// The SYN may still wait for neighbor resolution when dial gives up
	// (a loaded machine): wait for its drop to be counted.
	e.waitDrop(t, true, reason, before, fmt.Sprintf("B:%d: dial failed (%v); an ingress %v drop counted", port, err, reason))
}

func timeoutFor(allowed bool) time.Duration {
	if allowed {
		return 5 * time.Second
	}
	return dialTimeout
}

// waitDrop waits up to 5s for the counter of (ingress, r) to exceed before.
func (e *policyEnv) waitDrop(t *testing.T, ingress bool, r Reason, before uint64, what string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, what, func() bool {
		m, err := e.d.Metrics()
		return err == nil && m[MetricKey{Ingress: ingress, Reason: r}].Packets > before
	})
}

func (e *policyEnv) metric(t *testing.T, ingress bool, r Reason) uint64 {
	t.Helper()
	m, err := e.d.Metrics()
	must(t, err)
	return m[MetricKey{Ingress: ingress, Reason: r}].Packets
}

// forEachAttach runs f with the programs attached by TCX and by clsact,
// over IPv4 and over IPv6 (dual-stack pods).
func forEachAttach(t *testing.T, f func(*testing.T, envOpts)) {
	t.Parallel()
	for _, mode := range []string{TCAttachTCX, TCAttachClsact} {
		for _, family := range []int{4, 6} {
			t.Run(fmt.Sprintf("%s/IPv%d", mode, family), func(t *testing.T) {
				t.Parallel()
				f(t, envOpts{Options: Options{TCAttach: mode}, Family: family})
			})
		}
	}
}

// forEachFamily runs f over IPv4 and over IPv6 (dual-stack pods).
func forEachFamily(t *testing.T, f func(t *testing.T, family int)) {
	t.Parallel()
	for _, family := range []int{4, 6} {
		t.Run(fmt.Sprintf("IPv%d", family), func(t *testing.T) {
			t.Parallel()
			f(t, family)
		})
	}
}

func TestPolicyByIdentityAndPort(t *testing.T) { forEachAttach(t, testPolicyByIdentityAndPort) }

func testPolicyByIdentityAndPort(t *testing.T, opts envOpts) {
	e := newPolicyEnvFor(t, opts)

	// Nothing allowed yet.
	e.expectTCP(t, 8080, false, ReasonPolicyDenied)

	must(t, e.d.SetPolicy(epB, []PolicyRule{
		{Identity: idA, Ingress: true, Proto: ProtoTCP, Port: 8080},
		{Identity: idA, Ingress: true, Proto: ProtoTCP, Port: 9000, EndPort: 9010},
	}))
	e.expectTCP(t, 8080, true, 0)
	e.expectTCP(t, 8081, false, ReasonPolicyDenied)
	e.expectTCP(t, 9005, true, 0)
	e.expectTCP(t, 9011, false, ReasonPolicyDenied)

	// A map update flips the verdict without reloading: A's address gets
	// another identity, which has no rule.
	must(t, e.d.IPCache().Update(hostPrefix(e.a.ip), IPCacheValue{Identity: 3000}))
	e.expectTCP(t, 8080, false, ReasonPolicyDenied)
	// ... and a wildcard-identity rule for the port lets it in again.
	must(t, e.d.SetPolicy(epB, []PolicyRule{{Identity: 0, Ingress: true, Proto: ProtoTCP, Port: 8080}}))
	e.expectTCP(t, 8080, true, 0)

	// Deny wins over allow, also over a more specific allow.
	must(t, e.d.SetPolicy(epB, []PolicyRule{
		{Identity: 3000, Ingress: true, Proto: ProtoTCP, Port: 8080},
		{Identity: 0, Ingress: true, Deny: true, Proto: ProtoTCP},
	}))
	e.expectTCP(t, 8080, false, ReasonPolicyDenyRule)

	// Not enforcing ingress allows everything.
	must(t, e.d.EndpointConfigs().Update(epB, EndpointConfig{Identity: idB, EnforceEgress: true}))
	e.expectTCP(t, 8081, true, 0)
}

func TestPolicyEgressAndUDP(t *testing.T) { forEachAttach(t, testPolicyEgressAndUDP) }

func testPolicyEgressAndUDP(t *testing.T, opts envOpts) {
	e := newPolicyEnvFor(t, opts)
	must(t, e.d.SetPolicy(epB, []PolicyRule{{Identity: idA, Ingress: true, Port: 5353}})) // TCP, UDP, SCTP
	dst := netip.AddrPortFrom(e.b.ip, 5353)
	if err := udpExchange(e.a, dst, 2*time.Second); err != nil {
		t.Fatalf("UDP to an allowed port: %v", err)
	}

	// A's egress: only to B's identity on UDP 5353. Replies to A pass A's
	// enforced ingress (which has no rules) through conntrack.
	must(t, e.d.SetPolicy(epA, []PolicyRule{{Identity: idB, Proto: ProtoUDP, Port: 5353}}))
	if err := udpExchange(e.a, dst, 2*time.Second); err != nil {
		t.Fatalf("UDP allowed by egress and ingress policy: %v", err)
	}
	before := e.metric(t, false, ReasonPolicyDenied)
	if c, err := dial(e.a, netip.AddrPortFrom(e.b.ip, 8080), dialTimeout); err == nil {
		c.Close()
		t.Fatal("TCP from A: want dropped by A's egress policy")
	}
	e.waitDrop(t, false, ReasonPolicyDenied, before, "an egress drop counted")
}

func TestPolicyReplaceKeepsAllowedTraffic(t *testing.T) {
	t.Parallel()
	e := newPolicyEnv(t, Options{})
	rules := []PolicyRule{{Identity: idA, Ingress: true, Proto: ProtoUDP, Port: 5353}}
	must(t, e.d.SetPolicy(epB, rules))

	// Replace the rule set over and over (with rules that all allow the
	// flow) while new UDP flows run: none may be dropped.
	dst := netip.AddrPortFrom(e.b.ip, 5353)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			rs := append([]PolicyRule{}, rules...)
			for j := range i % 7 {
				rs = append(rs, PolicyRule{Identity: uint32(5000 + j), Ingress: true, Proto: ProtoTCP, Port: uint16(100 + j)})
			}
			if err := e.d.SetPolicy(epB, rs); err != nil {
				done <- err
				return
			}
		}
	}()
	before := e.metric(t, true, ReasonPolicyDenied)
	for range 200 {
		if err := udpExchange(e.a, dst, 2*time.Second); err != nil {
			t.Errorf("UDP flow during policy replacement: %v", err)
			break
		}
	}
	close(stop)
	must(t, <-done)
	if n := e.metric(t, true, ReasonPolicyDenied) - before; n != 0 {
		t.Fatalf("%d packets dropped during policy replacement", n)
	}
	got, err := e.d.Policy().List()
	must(t, err)
	if len(got[epB]) == 0 {
		t.Fatal("policy of B is empty after replacement")
	}
}

// TestPolicyReplaceRace drives new flows through the program as fast as
// BPF_PROG_TEST_RUN can (conntrack lifetime 1ns: every packet is decided
// by policy) while another goroutine replaces the rules with rule sets
// that all allow the flow. A program that read the previous generation
// must still find its entries: not one packet may be dropped.
func TestPolicyReplaceRace(t *testing.T) {
	t.Parallel()
	d := load(t, Options{PinDir: newBPFFS(t), CTTimeoutTCP: time.Nanosecond, TraceSample: -1})
	const ep, peer = 9, 50001
	src := netip.MustParseAddrPort("10.1.0.1:40000")
	dst := netip.MustParseAddrPort("10.2.0.1:8080")
	must(t, d.tc.Endpoints.Update(uint32(1), uint16(ep), 0)) // BPF_PROG_TEST_RUN uses lo
	must(t, d.EndpointConfigs().Update(ep, EndpointConfig{Identity: 1, EnforceIngress: true}))
	must(t, d.IPCache().Update(netip.PrefixFrom(src.Addr(), 32), IPCacheValue{Identity: peer}))
	allow := PolicyRule{Identity: peer, Ingress: true, Proto: ProtoTCP, Port: 8080}
	must(t, d.SetPolicy(ep, []PolicyRule{allow}))

	stop := make(chan struct{})
	done := make(chan error, 1)
	sets := 0
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			rs := []PolicyRule{allow}
			// Alternate the port prefixes in use, so that the generations
			// differ in their masks too.
			if i%2 == 1 {
				rs = append(rs, PolicyRule{Identity: peer, Ingress: true, Proto: ProtoTCP, Port: 8000, EndPort: 8100})
			}
			if err := d.SetPolicy(ep, rs); err != nil {
				done <- err
				return
			}
			sets++
		}
	}()
	pkt := synPacket(src, dst)
	deadline := time.Now().Add(2 * time.Second)
	runs := 0
	for time.Now().Before(deadline) {
		if _, _, err := d.tc.ToEndpoint.Benchmark(pkt, 2000, nil); err != nil {
			close(stop)
			<-done
			t.Fatal(err)
		}
		runs++
	}
	close(stop)
	must(t, <-done)
	m, err := d.Metrics()
	must(t, err)
	allowed := m[MetricKey{Ingress: true, Reason: ReasonPolicyAllow}].Packets
	dropped := m[MetricKey{Ingress: true, Reason: ReasonPolicyDenied}].Packets
	t.Logf("%d packets decided during %d replacements: %d allowed, %d dropped", runs*2000, sets, allowed, dropped)
	if sets < 10 {
		t.Fatalf("only %d replacements ran; the test did not race", sets)
	}
	// A run interrupted by a signal is retried whole, so more packets than
	// requested may have been decided.
	if dropped != 0 || allowed < uint64(runs*2000) {
		t.Fatalf("%d of %d packets dropped, %d allowed, during policy replacement", dropped, runs*2000, allowed)
	}
}

// Rules by address (Kubernetes NetworkPolicy ipBlock) match a pod inside
// the block whatever its identity; a CIDR rule without it (Cilium's
// semantics) does not; the longest prefix decides, so an exception inside
// the block (its own CIDR identity, not selected) takes the pod out.
func TestPolicyByAddress(t *testing.T) { forEachFamily(t, testPolicyByAddress) }

func testPolicyByAddress(t *testing.T, family int) {
	const cidrID, holeID = 16777300, 16777301
	e := newPolicyEnvFor(t, envOpts{Family: family})
	bits := 24
	if family == 6 {
		bits = 64
	}
	block := netip.PrefixFrom(e.a.ip, bits).Masked()
	must(t, e.d.SetPolicy(epB, []PolicyRule{
		{Identity: cidrID, Ingress: true, Proto: ProtoTCP, Port: 8080, ByAddress: true},
		{Identity: cidrID, Ingress: true, Proto: ProtoTCP, Port: 8081},
	}))
	e.expectTCP(t, 8080, false, ReasonPolicyDenied) // the block is not known yet

	must(t, e.d.CIDRIdentities().Update(block, cidrID))
	e.expectTCP(t, 8080, true, 0)
	e.expectTCP(t, 8081, false, ReasonPolicyDenied) // by identity only: A is idA

	must(t, e.d.CIDRIdentities().Update(hostPrefix(e.a.ip), holeID))
	e.expectTCP(t, 8080, false, ReasonPolicyDenied)
	must(t, e.d.CIDRIdentities().Delete(hostPrefix(e.a.ip)))
	e.expectTCP(t, 8080, true, 0)

	got, err := e.d.CIDRIdentities().List()
	must(t, err)
	if len(got) != 1 || got[block] != cidrID {
		t.Fatalf("CIDR identities %v, want %v -> %d", got, block, cidrID)
	}
	for _, bad := range []PolicyRule{
		{Identity: cidrID, Ingress: true, ByAddress: true, Deny: true},
		{Identity: 0, Ingress: true, ByAddress: true},
		{Identity: cidrID | IdentityByAddress, Ingress: true},
	} {
		if err := e.d.SetPolicy(epB, []PolicyRule{bad}); err == nil {
			t.Errorf("rule %+v accepted", bad)
		}
	}
}
