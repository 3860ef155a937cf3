//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/starwars"
	"github.com/clustermesh/clustermesh/e2e/workload"
)

// BenchmarkCrossCluster measures, on the bed, connect() across clusters
// through a global Service's ClusterIP (socket load balancing picks a
// remote backend) against connect() to the remote backends' IPs directly,
// and TCP throughput pod to pod across clusters (WireGuard between nodes)
// against pod to pod on one node (plain veths through the node). Each pair
// is measured in the same run, alternating, and printed with its ratio.
func BenchmarkCrossCluster(b *testing.B) {
	tb := startBed(b, nil)
	dir := tb.Dir()
	w, err := starwars.New(b.Context(), tb)
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	// Only cluster2's backends serve cluster1's clients.
	if err := tb.Cluster("cluster1").Annotate(ctx, starwars.Namespace, "rebel-base", map[string]string{"service.cilium.io/affinity": "remote"}); err != nil {
		b.Fatal(err)
	}
	xwing, svc := w.Pod("cluster1/x-wing"), w.RebelBase["cluster1"]
	if _, err := w.WaitTally(ctx, xwing, svc, 10, time.Minute, "rebel-base served by cluster2 only", func(t starwars.Tally) bool { return t.Only("cluster2") }); err != nil {
		b.Fatal(err)
	}
	direct := []string{w.Pod("cluster2/rebel-base-a").Addr(), w.Pod("cluster2/rebel-base-b").Addr()}
	// The baselines of throughput: two plain nodes on the same underlay,
	// a pod behind a veth on each, joined by a wireguard-go tunnel built
	// by hand, then by plain routing.
	m1, m2, stopTunnels := handBuiltTunnel(b, tb, dir)
	for b.Loop() {
		const rounds = 1000
		var viaSvc, viaIP []float64
		for i := range rounds {
			for _, addr := range []string{svc, direct[i%2]} {
				r, err := xwing.Dial(ctx, workload.DialRequest{Addr: addr, Message: "x", TimeoutMS: 2000})
				if err != nil || r.Error != "" {
					b.Fatalf("connect to %s: %v %s", addr, err, r.Error)
				}
				if addr == svc {
					viaSvc = append(viaSvc, float64(r.ConnectMicros))
				} else {
					viaIP = append(viaIP, float64(r.ConnectMicros))
				}
			}
		}
		p50s, p50d := pct(viaSvc, 50), pct(viaIP, 50)
		p99s, p99d := pct(viaSvc, 99), pct(viaIP, 99)
		fmt.Printf("connect() across clusters, %d each: ClusterIP p50 %.0f µs p99 %.0f µs; backend IP p50 %.0f µs p99 %.0f µs; ratio p50 %.3f p99 %.3f\n",
			rounds, p50s, p99s, p50d, p99d, p50s/p50d, p99s/p99d)
		b.ReportMetric(p50s/p50d, "p50-ratio")

		const size = 64 << 20
		remote, local := w.Pod("cluster2/rebel-base-a"), w.Pod("cluster1/rebel-base-b") // local: x-wing's node
		manualAddr := netip.AddrPortFrom(m2.PodIP, bed.WorkloadPort).String()
		mbps := func(from *workload.Client, addr string) float64 {
			r, err := from.Sink(ctx, addr, size)
			if err != nil {
				b.Fatalf("sink to %s: %v", addr, err)
			}
			return float64(size) * 8 / r.Seconds / 1e6
		}
		var cross, manual, same, plain []float64
		for range 5 { // alternating, so that both see the same machine
			cross = append(cross, mbps(xwing.Client, remote.Addr()))
			manual = append(manual, mbps(m1.Pod, manualAddr))
			same = append(same, mbps(xwing.Client, local.Addr()))
		}
		stopTunnels()
		for range 5 {
			plain = append(plain, mbps(m1.Pod, manualAddr))
		}
		fmt.Printf("TCP throughput pod to pod, 64 MiB x 5, medians: across clusters through the agents (WireGuard) %.0f Mbit/s; "+
			"wireguard-go tunnel built by hand on two plain nodes %.0f Mbit/s (ratio %.3f); the same plain nodes routed without a tunnel (veth) %.0f Mbit/s (ratio %.3f); "+
			"pod to pod on one node %.0f Mbit/s\n",
			pct(cross, 50), pct(manual, 50), pct(cross, 50)/pct(manual, 50), pct(plain, 50), pct(cross, 50)/pct(plain, 50), pct(same, 50))
		b.ReportMetric(pct(cross, 50)/pct(manual, 50), "wg-ratio")
	}
}

// handBuiltTunnel makes two plain nodes with a pod each and joins them with
// a wireguard-go tunnel configured by hand in a process of each node
// (runHandBuiltTunnel); stop ends the tunnels and routes the pods' CIDRs
// over the underlay instead.
func handBuiltTunnel(b *testing.B, tb *bed.Bed, dir string) (m1, m2 *bed.PlainNode, stop func()) {
	ctx := b.Context()
	var err error
	if m1, err = tb.AddPlainNode(ctx, "m1", 91, netip.MustParsePrefix("10.91.0.0/24")); err != nil {
		b.Fatal(err)
	}
	if m2, err = tb.AddPlainNode(ctx, "m2", 92, netip.MustParsePrefix("10.92.0.0/24")); err != nil {
		b.Fatal(err)
	}
	keys := map[*bed.PlainNode]wgtypes.Key{}
	for _, n := range []*bed.PlainNode{m1, m2} {
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			b.Fatal(err)
		}
		keys[n] = k
		if err := os.WriteFile(filepath.Join(dir, n.Name+".key"), []byte(k.String()+"\n"), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	var procs []*bed.Process
	for n, peer := range map[*bed.PlainNode]*bed.PlainNode{m1: m2, m2: m1} {
		p, err := n.Run(ctx, "tunnel", []string{"CLUSTERMESH_BED_TUNNEL=1", "TUNNEL_NAME=" + tb.DeviceName(n.Name),
			"TUNNEL_KEY=" + filepath.Join(dir, n.Name+".key"), "TUNNEL_PEER_KEY=" + keys[peer].PublicKey().String(),
			"TUNNEL_PEER_IP=" + peer.IP.String(), "TUNNEL_PEER_CIDR=" + peer.PodCIDR.String()}, os.Args[0], "-test.run=^$")
		if err != nil {
			b.Fatal(err)
		}
		procs = append(procs, p)
	}
	addr := netip.AddrPortFrom(m2.PodIP, bed.WorkloadPort).String()
	if err := tb.WaitUntil(ctx, 30*time.Second, "m1's pod -> m2's pod through the hand-built tunnel", func(ctx context.Context) (bool, string) {
		for _, p := range procs {
			if err := p.Running(); err != nil {
				b.Fatal(err)
			}
		}
		r, err := m1.Pod.Dial(ctx, workload.DialRequest{Addr: addr, Message: "x", TimeoutMS: 500})
		if err != nil {
			return false, err.Error()
		}
		return r.Error == "", r.Error
	}); err != nil {
		b.Fatal(err)
	}
	return m1, m2, func() {
		for _, p := range procs {
			if err := p.Stop(); err != nil {
				b.Fatal(err)
			}
		}
		for n, peer := range map[*bed.PlainNode]*bed.PlainNode{m1: m2, m2: m1} {
			if err := n.RouteVia(peer); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func pct(v []float64, p int) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
