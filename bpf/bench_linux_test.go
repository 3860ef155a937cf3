package bpf

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// The benchmarks measure each variant several times, interleaved, and
// report medians and their ratios (the machine is shared, so single runs are
// noisy). Run them with -benchtime=1x; see README.md.

const benchRounds = 5

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// synPacket is an Ethernet/IPv4/TCP SYN from src to dst.
func synPacket(src, dst netip.AddrPort) []byte {
	var b bytes.Buffer
	b.Write(make([]byte, 12))   // MACs
	b.Write([]byte{0x08, 0x00}) // IPv4
	ip := []byte{0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0}
	ip = append(ip, src.Addr().AsSlice()...)
	ip = append(ip, dst.Addr().AsSlice()...)
	b.Write(ip)
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	tcp[12] = 5 << 4
	tcp[13] = 0x02 // SYN
	b.Write(tcp)
	return b.Bytes()
}

// BenchmarkPolicyProgram runs the ingress program on a new flow (every run
// misses conntrack: the TCP lifetime is 1ns) through BPF_PROG_TEST_RUN:
// with 10 and with 10,000 rules, over IPv4 and IPv6 (target: ratio
// 10000/10 <= 1.1 for each; and the cost of IPv6 against IPv4); and a flow
// from a pod that only a rule by address allows (its address inside one of
// 1,000 Kubernetes ipBlock rules) against the same flow allowed by a rule
// of its identity (the cost of the per-address check).
func BenchmarkPolicyProgram(b *testing.B) {
	d := load(b, Options{PinDir: newBPFFS(b), CTTimeoutTCP: time.Nanosecond, TraceSample: -1})
	const ep, peer = 7, 50000
	// BPF_PROG_TEST_RUN runs the packet on lo (ifindex 1).
	must(b, d.tc.Endpoints.Update(uint32(1), uint16(ep), 0))
	must(b, d.EndpointConfigs().Update(ep, EndpointConfig{Identity: 1, EnforceIngress: true}))
	src4, dst4 := netip.MustParseAddrPort("10.1.0.1:40000"), netip.MustParseAddrPort("10.2.0.1:8080")
	src6, dst6 := netip.MustParseAddrPort("[fd00:1::1]:40000"), netip.MustParseAddrPort("[fd00:2::1]:8080")
	for _, a := range []netip.Addr{src4.Addr(), src6.Addr()} {
		must(b, d.IPCache().Update(hostPrefix(a), IPCacheValue{Identity: peer}))
	}
	pkt4, pkt6 := synPacket(src4, dst4), frame6(src6.Addr(), dst6.Addr(), nil, ProtoTCP, tcpSYN(8080))

	rules := func(n int) []PolicyRule {
		rs := make([]PolicyRule, 0, n)
		for i := range n {
			// n/10 identities x 10 ports; one of them is the packet's.
			rs = append(rs, PolicyRule{Identity: uint32(peer + i/10), Ingress: true, Proto: ProtoTCP, Port: uint16(8080 + i%10)})
		}
		return rs
	}
	// byAddress: 1,000 ipBlock rules of CIDR identities of /24s; the
	// packet's source is in the last one.
	const cidrBase = 16777216 + 1000
	byAddress := make([]PolicyRule, 0, 1000)
	for i := range 1000 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/256), byte(i), 0}), 24)
		if i == 999 {
			p = netip.PrefixFrom(src4.Addr(), 24).Masked()
		}
		must(b, d.CIDRIdentities().Update(p, uint32(cidrBase+i)))
		byAddress = append(byAddress, PolicyRule{Identity: uint32(cidrBase + i), Ingress: true, Proto: ProtoTCP, Port: 8080, ByAddress: true})
	}
	const repeat = 500000
	run := func(rs []PolicyRule, pkt []byte) float64 {
		must(b, d.SetPolicy(ep, rs))
		ret, per, err := d.tc.ToEndpoint.Benchmark(pkt, repeat, nil)
		must(b, err)
		if int32(ret) != -1 { // TC_ACT_UNSPEC: allowed
			b.Fatalf("%d rules: program returned %d, want allowed (-1)", len(rs), int32(ret))
		}
		return float64(per.Nanoseconds())
	}
	cases := []struct {
		name  string
		rules []PolicyRule
		pkt   []byte
	}{
		{"ipv4-10rules", rules(10), pkt4},
		{"ipv4-10000rules", rules(10000), pkt4},
		{"ipv6-10rules", rules(10), pkt6},
		{"ipv6-10000rules", rules(10000), pkt6},
		{"ipv4-identity-rule", rules(10), pkt4},
		{"ipv4-1000-ipblock-rules", byAddress, pkt4},
	}
	times := map[string][]float64{}
	for range b.N {
		for range benchRounds {
			for _, c := range cases {
				times[c.name] = append(times[c.name], run(c.rules, c.pkt))
			}
		}
	}
	m, err := d.Metrics()
	must(b, err)
	if m[MetricKey{Ingress: true, Reason: ReasonPolicyAllow}].Packets < repeat*uint64(len(cases)) {
		b.Fatal("the runs did not go through the policy lookup")
	}
	med := map[string]float64{}
	for _, c := range cases {
		med[c.name] = median(times[c.name])
		b.ReportMetric(med[c.name], "ns/pkt-"+c.name)
	}
	r4, r6 := med["ipv4-10000rules"]/med["ipv4-10rules"], med["ipv6-10000rules"]/med["ipv6-10rules"]
	r46 := med["ipv6-10rules"] / med["ipv4-10rules"]
	rAddr := med["ipv4-1000-ipblock-rules"] / med["ipv4-identity-rule"]
	b.ReportMetric(r4, "ratio-ipv4-10000/10")
	b.ReportMetric(r6, "ratio-ipv6-10000/10")
	b.ReportMetric(r46, "ratio-ipv6/ipv4")
	b.ReportMetric(rAddr, "ratio-ipblock/identity")
	b.Logf("policy program, new flow, BPF_PROG_TEST_RUN x%d, median of %d: IPv4 10 rules %.0f ns, 10000 rules %.0f ns, ratio %.3f; IPv6 10 rules %.0f ns, 10000 rules %.0f ns, ratio %.3f (targets <= 1.1); IPv6/IPv4 %.3f; allowed by one of 1000 ipBlock rules %.0f ns vs by an identity rule %.0f ns, ratio %.3f",
		repeat, benchRounds*b.N, med["ipv4-10rules"], med["ipv4-10000rules"], r4, med["ipv6-10rules"], med["ipv6-10000rules"], r6, r46,
		med["ipv4-1000-ipblock-rules"], med["ipv4-identity-rule"], rAddr)
}

// iptablesRestore loads rules into the node namespace's filter table.
func iptablesRestore(tb testing.TB, topo *topology, rules string) {
	tb.Helper()
	err := inNS(topo.node, func() error {
		cmd := exec.Command("iptables-restore")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("iptables-restore: %w: %s", err, out)
		}
		return nil
	})
	must(tb, err)
}

// udpFlows runs n request/response exchanges from p to dst, each from a new
// socket (a new flow), and returns the mean time of one.
func udpFlows(tb testing.TB, p *pod, dst netip.AddrPort, n int) float64 {
	tb.Helper()
	var per float64
	err := inNS(p.ns, func() error {
		buf := make([]byte, 64)
		start := time.Now()
		for range n {
			c, err := net.Dial("udp4", dst.String())
			if err != nil {
				return err
			}
			if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
				return err
			}
			if _, err := c.Write([]byte("x")); err != nil {
				return err
			}
			if _, err := c.Read(buf); err != nil {
				return fmt.Errorf("flow dropped: %w", err)
			}
			c.Close()
		}
		per = float64(time.Since(start).Nanoseconds()) / float64(n)
		return nil
	})
	must(tb, err)
	return per
}

// BenchmarkPolicyIptablesVsBPF makes the same decision (10,000 rules, the
// matching one among them) with an iptables chain in the node namespace and
// with the BPF program, for real UDP flows between two pods, and compares
// what each adds to a flow over no filtering. Target: BPF >= 10x cheaper.
func BenchmarkPolicyIptablesVsBPF(b *testing.B) {
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		b.Fatal("iptables-restore not found: run hack/bpf-deps.sh")
	}
	e := newPolicyEnv(b, Options{TraceSample: -1})
	dst := netip.AddrPortFrom(e.b.ip, 5353)
	const n, flows = 10000, 2000

	bpfRules := make([]PolicyRule, 0, n)
	var ipt strings.Builder
	ipt.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	ipt.WriteString("-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n")
	for i := range n - 1 {
		bpfRules = append(bpfRules, PolicyRule{Identity: uint32(60000 + i), Ingress: true, Proto: ProtoUDP, Port: 5353})
		fmt.Fprintf(&ipt, "-A FORWARD -s 10.%d.%d.%d/32 -d %s/32 -p udp --dport 5353 -j ACCEPT\n", 100+i/65536, i/256%256, i%256, e.b.ip)
	}
	bpfRules = append(bpfRules, PolicyRule{Identity: idA, Ingress: true, Proto: ProtoUDP, Port: 5353})
	fmt.Fprintf(&ipt, "-A FORWARD -s %s/32 -d %s/32 -p udp --dport 5353 -j ACCEPT\nCOMMIT\n", e.a.ip, e.b.ip)
	const flush = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
	must(b, e.d.SetPolicy(epB, bpfRules))

	open := EndpointConfig{Identity: idB}
	enforced := EndpointConfig{Identity: idB, EnforceIngress: true}
	must(b, e.d.EndpointConfigs().Update(epA, EndpointConfig{Identity: idA}))
	udpFlows(b, e.a, dst, 200) // warm up

	var base, ipts, bpfs []float64
	for range b.N {
		for range benchRounds {
			must(b, e.d.EndpointConfigs().Update(epB, open))
			base = append(base, udpFlows(b, e.a, dst, flows))

			must(b, e.d.EndpointConfigs().Update(epB, enforced))
			bpfs = append(bpfs, udpFlows(b, e.a, dst, flows))
			must(b, e.d.EndpointConfigs().Update(epB, open))

			iptablesRestore(b, e.topo, ipt.String())
			ipts = append(ipts, udpFlows(b, e.a, dst, flows))
			iptablesRestore(b, e.topo, flush)
		}
	}
	t0, tb, ti := median(base), median(bpfs), median(ipts)
	oi, ob := ti-t0, tb-t0
	b.ReportMetric(t0, "ns/flow-nofilter")
	b.ReportMetric(tb, "ns/flow-bpf")
	b.ReportMetric(ti, "ns/flow-iptables")
	b.ReportMetric(oi, "ns/flow-iptables-cost")
	b.ReportMetric(ob, "ns/flow-bpf-cost")
	// The BPF cost can be below the noise of the baseline; the ratio uses
	// at least 100ns for it (the program's whole new-flow path measured by
	// BenchmarkPolicyProgram is below that) so it is never overstated.
	ratio := oi / max(ob, 100)
	b.ReportMetric(ratio, "ratio-iptables/bpf-cost")
	b.Logf("UDP flows A->B, median of %d x %d flows: no filter %.0f ns, BPF %.0f ns (+%.0f), iptables %.0f ns (+%.0f); iptables/BPF added cost %.1fx (BPF cost floored at 100ns; target >= 10x)",
		len(base), flows, t0, tb, ob, ti, oi, ratio)
}

// BenchmarkConnectClusterIP compares connect() to a ClusterIP (rewritten by
// the connect4 or connect6 program) with connect() straight to the backend,
// from a process in the attached cgroup, for TCP (full handshake on
// loopback) and UDP (connect only sets the peer: the hook's cost shows
// most), over IPv4 and IPv6. Target: ratio <= 1.1.
func BenchmarkConnectClusterIP(b *testing.B) {
	d := load(b, Options{PinDir: newBPFFS(b)})
	cg := newCgroup(b)
	must(b, d.AttachCgroup(cg))
	measure := func(mode string, addr netip.AddrPort, n int) float64 {
		var r helperBench
		must(b, json.Unmarshal(runInCgroup(b, cg, mode, addr.String(), fmt.Sprint(n)), &r))
		return r.NsPerOp
	}
	for _, fam := range []struct{ name, lo, fe string }{
		{"ipv4", "127.0.0.1", "10.96.0.20:80"},
		{"ipv6", "::1", "[fd00:96::20]:80"},
	} {
		be := backendServerOn(b, fam.lo)
		fe := netip.MustParseAddrPort(fam.fe)
		for _, proto := range []uint8{ProtoTCP, ProtoUDP} {
			must(b, d.Services().Update(Frontend{Addr: fe.Addr(), Port: fe.Port(), Proto: proto}, []Backend{{Addr: be.Addr(), Port: be.Port()}}))
		}
		for _, tc := range []struct {
			mode string
			n    int
		}{{"connect-tcp", 10000}, {"connect-udp", 50000}} {
			// Rounds alternate which goes first; each round's ratio compares
			// two runs made back to back, so that drift of the machine (other
			// load, frequency) cancels out. The ratio reported is the median of
			// those; the medians of the times are reported too.
			var svc, direct, ratios []float64
			for range b.N {
				for i := range 2 * benchRounds {
					var s, d float64
					if i%2 == 0 {
						s = measure(tc.mode, fe, tc.n)
						d = measure(tc.mode, be, tc.n)
					} else {
						d = measure(tc.mode, be, tc.n)
						s = measure(tc.mode, fe, tc.n)
					}
					svc, direct, ratios = append(svc, s), append(direct, d), append(ratios, s/d)
				}
			}
			s, dd, r := median(svc), median(direct), median(ratios)
			name := fam.name + "-" + strings.TrimPrefix(tc.mode, "connect-")
			b.ReportMetric(s, "ns/connect-"+name+"-clusterip")
			b.ReportMetric(dd, "ns/connect-"+name+"-direct")
			b.ReportMetric(r, "ratio-"+name+"-clusterip/direct")
			b.Logf("%s connect(), %d rounds x %d: median ClusterIP %.0f ns, direct %.0f ns; median of the rounds' ratios %.3f (target <= 1.1), ratio of the medians %.3f",
				name, len(svc), tc.n, s, dd, r, s/dd)
		}
	}
}
