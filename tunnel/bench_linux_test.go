package tunnel_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// transferSize is what one benchmark operation sends pod to pod.
const transferSize = 64 << 20

// BenchmarkPodToPodTCP sends 64 MiB over TCP from pod a to pod b, first
// through the tunnel, then over the plain veth (peers deleted, pod CIDRs
// routed via the other node's underlay address), and prints both rates and
// their ratio (metric wg/veth on the veth line). Run without -race: it measures wireguard-go in this process.
func BenchmarkPodToPodTCP(b *testing.B) {
	requireRoot(b)
	p := newPair(b)
	p.a.start(b)
	p.b.start(b)
	peerTables := func() {
		if err := p.a.dev.Peers().Update(b.Context(), keyOf(p.b), peerOf(p.b)); err != nil {
			b.Fatal(err)
		}
		if err := p.b.dev.Peers().Update(b.Context(), keyOf(p.a), peerOf(p.a)); err != nil {
			b.Fatal(err)
		}
	}
	peerTables()
	addr := p.b.podIP + ":7001"
	sinkServer(b, p.b.podNS, addr)

	rates := map[string]float64{}
	wgName := "wireguard-" + string(p.a.dev.Mode())
	run := func(name string) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(transferSize)
			buf := make([]byte, 256<<10)
			for b.Loop() {
				send(b, p.a.podNS, addr, buf)
			}
			rates[name] = float64(transferSize) * float64(b.N) / b.Elapsed().Seconds() / (1 << 20)
			b.ReportMetric(rates[name], "MiB/s")
			if w := rates[wgName]; name == "veth" && rates[name] > 0 {
				b.ReportMetric(w/rates[name], "wg/veth")
			}
		})
	}
	run(wgName)

	for on, of := range map[*node]*node{p.a: p.b, p.b: p.a} {
		if err := on.dev.Peers().Delete(b.Context(), keyOf(of)); err != nil {
			b.Fatal(err)
		}
		ip(b, "-n", on.name, "route", "add", of.podCIDR, "via", of.nodeIP, "dev", "ul0")
	}
	run("veth")
	for name, r := range rates {
		b.Logf("%s: %.0f MiB/s", name, r)
	}
	if w, v := rates[wgName], rates["veth"]; v > 0 {
		b.Logf("wireguard/veth throughput ratio: %.3f (%d MiB per operation, pod to pod TCP)", w/v, transferSize>>20)
	}
}

// sinkServer reads each connection to its end, then answers one byte.
func sinkServer(b *testing.B, ns, addr string) {
	b.Helper()
	var ln net.Listener
	inNetNS(b, ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			_, _ = io.Copy(io.Discard, c)
			_, _ = c.Write([]byte{1})
			c.Close()
		}
	})
}

// send writes transferSize bytes to addr from ns and waits for the ack.
func send(b *testing.B, ns, addr string, buf []byte) {
	c, err := dial(b, ns, addr, 3*time.Second)
	if err != nil {
		b.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	for sent := 0; sent < transferSize; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			b.Fatalf("send: %v", err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		b.Fatalf("ack: %v", err)
	}
}
