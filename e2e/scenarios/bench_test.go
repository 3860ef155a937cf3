package scenarios

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

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
	if os.Geteuid() != 0 {
		b.Fatal("needs root (network namespaces, BPF, bpffs, cgroups)")
	}
	dir, err := os.MkdirTemp("", "cmbed")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	tb, err := bed.New(b.Context(), bed.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer tb.Close()
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
		var cross, same []float64
		for range 3 {
			for _, to := range []*bed.Pod{remote, local} {
				r, err := xwing.Sink(ctx, to.Addr(), size)
				if err != nil {
					b.Fatalf("sink to %s: %v", to, err)
				}
				mbps := float64(size) * 8 / r.Seconds / 1e6
				if to == remote {
					cross = append(cross, mbps)
				} else {
					same = append(same, mbps)
				}
			}
		}
		fmt.Printf("TCP throughput, 64 MiB x 3: across clusters (WireGuard) median %.0f Mbit/s; same node (plain veths) median %.0f Mbit/s; ratio %.3f\n",
			pct(cross, 50), pct(same, 50), pct(cross, 50)/pct(same, 50))
		b.ReportMetric(pct(cross, 50), "cross-Mbit/s")
	}
}

func pct(v []float64, p int) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
