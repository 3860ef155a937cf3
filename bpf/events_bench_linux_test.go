package bpf

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkEvents measures the datapath's events as the agent reads them:
// the cost of Read (ring buffer and decode) per event, draining a full ring
// buffer; and a flood of denied packets (BPF_PROG_TEST_RUN, one CPU, as
// fast as the program runs) read at the same time: the rate, and the share
// of events lost (counted, never silent). Run with -benchtime=1x.
func BenchmarkEvents(b *testing.B) {
	d := load(b, Options{PinDir: newBPFFS(b)})
	const ep = 7
	// BPF_PROG_TEST_RUN runs the packet on lo (ifindex 1); no rule: denied.
	must(b, d.tc.Endpoints.Update(uint32(1), uint16(ep), 0))
	must(b, d.EndpointConfigs().Update(ep, EndpointConfig{Identity: 1, EnforceIngress: true}))
	must(b, d.SetPolicy(ep, nil))
	pkt := synPacket(netip.MustParseAddrPort("10.1.0.1:40000"), netip.MustParseAddrPort("10.2.0.1:8080"))
	r, err := d.Events()
	must(b, err)
	defer r.Close()

	// drain reads n events (already in the ring buffer).
	drain := func(n int) time.Duration {
		ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
		defer cancel()
		start := time.Now()
		for range n {
			_, err := r.Read(ctx)
			must(b, err)
		}
		return time.Since(start)
	}
	for range b.N {
		// A full ring buffer (about 13,000 events), then drained.
		const fill = 12000
		_, _, err := d.tc.ToEndpoint.Benchmark(pkt, fill, nil)
		must(b, err)
		n := fill
		took := drain(n)
		b.ReportMetric(float64(took.Nanoseconds())/float64(n), "ns/event-read")

		// A flood read at the same time.
		lostBefore, err := d.EventsLost()
		must(b, err)
		const flood = 2000000
		var read atomic.Int64
		var wg sync.WaitGroup
		ctx, cancel := context.WithCancel(b.Context())
		wg.Go(func() {
			for {
				if _, err := r.Read(ctx); err != nil {
					return
				}
				read.Add(1)
			}
		})
		_, per, err := d.tc.ToEndpoint.Benchmark(pkt, flood, nil)
		must(b, err)
		// The reader drains the rest: every event read or counted lost.
		var lost uint64
		for deadline := time.Now().Add(10 * time.Second); ; {
			lostAfter, err := d.EventsLost()
			must(b, err)
			if lost = lostAfter - lostBefore; uint64(read.Load())+lost >= flood || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		rate := 1e9 / float64(per.Nanoseconds())
		b.ReportMetric(rate, "events/s-flood")
		b.ReportMetric(100*float64(lost)/flood, "%lost-flood")
		if uint64(read.Load())+lost != flood {
			b.Errorf("flood of %d: %d read + %d lost = %d", flood, read.Load(), lost, uint64(read.Load())+lost)
		}
		b.Logf("drain: %d events, %.0f ns each; flood of %d denied packets at %.0f/s (one CPU): %d read, %d lost (%.1f%%)",
			n, float64(took.Nanoseconds())/float64(n), flood, rate, read.Load(), lost, 100*float64(lost)/flood)
	}
}
