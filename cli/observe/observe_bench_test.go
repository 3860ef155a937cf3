package observe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/agent/flowapi"
)

// streamLines is how many flow lines one agent's stream carries in
// BenchmarkObserveStream.
const streamLines = 50_000

// floodStream returns the answer of GET /v1/flows?follow=true of node as
// the agent writes it (a status line, the status line ending the held
// flows, then n flow lines: flowapi.Flow.AppendJSON inside {"flow":...},
// as agent/localapi does): the flood of BenchmarkObserveFlood (denied UDP
// datagrams between two pods, both ends resolved with their labels), one
// flow in 8 a forwarded TCP connection through a Service. Times start at
// start, one every step.
func floodStream(node string, n int, start time.Time, step time.Duration) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	st := flowapi.Status{Node: node, Time: start, Capacity: 8192, Held: 8192, Seen: 1 << 20}
	_ = enc.Encode(flowapi.Line{Status: &st})
	_ = enc.Encode(flowapi.Line{Status: &st})
	tie := flowapi.Endpoint{IP: netip.MustParseAddr("10.1.0.9"), Identity: 65547, Cluster: "cluster1", Namespace: "default", Pod: "tie-fighter",
		Labels: []string{"k8s:io.cilium.k8s.policy.cluster=cluster1", "k8s:io.kubernetes.pod.namespace=default", "k8s:name=tie-fighter"}}
	base := flowapi.Endpoint{IP: netip.MustParseAddr("10.1.0.7"), Port: 9999, Identity: 65548, Cluster: "cluster1", Namespace: "default", Pod: "rebel-base",
		Labels: []string{"k8s:io.cilium.k8s.policy.cluster=cluster1", "k8s:io.kubernetes.pod.namespace=default", "k8s:name=rebel-base"}}
	svc := &flowapi.ServiceTranslation{Namespace: "default", Name: "rebel-base", Frontend: netip.MustParseAddrPort("10.96.0.10:80"),
		Backend: netip.AddrPortFrom(base.IP, 80), BackendCluster: "cluster1"}
	var line []byte
	for i := range n {
		f := flowapi.Flow{Time: start.Add(time.Duration(i) * step), Node: node, Direction: flowapi.DirectionIngress, Verdict: flowapi.VerdictDropped,
			Reason: "policy-denied", Protocol: flowapi.ProtoUDP, EndpointID: 1234, Bytes: 60, Src: tie, Dst: base}
		f.Src.Port = uint16(40000 + i%20000)
		if i%8 == 7 {
			f.Direction, f.Verdict, f.Reason, f.Protocol, f.TCPFlags, f.Service = flowapi.DirectionEgress, flowapi.VerdictForwarded, "policy-allow",
				flowapi.ProtoTCP, flowapi.SYN, svc
			f.Dst.Port = 80
		}
		line = append(line[:0], `{"flow":`...)
		line = append(f.AppendJSON(line), '}', '\n')
		b.Write(line)
	}
	return b.Bytes()
}

// byteSource serves every node's recorded answer.
type byteSource map[string][]byte

func (s byteSource) Open(context.Context, flowapi.Request) []Stream {
	var out []Stream
	for node, b := range s {
		out = append(out, Stream{Node: node, Body: io.NopCloser(bytes.NewReader(b))})
	}
	return out
}

// pipeSink is the read end of a pipe drained to its end, as a terminal
// or `| grep` reads observe's stdout; the writes are counted.
type pipeSink struct {
	w      *os.File
	writes int
	done   chan struct{}
}

func newPipeSink(b *testing.B) *pipeSink {
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	s := &pipeSink{w: w, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_, _ = io.Copy(io.Discard, r)
		_ = r.Close()
	}()
	return s
}

func (s *pipeSink) Write(p []byte) (int, error) {
	s.writes++
	return s.w.Write(p)
}

func (s *pipeSink) close() {
	_ = s.w.Close()
	<-s.done
}

// phaseStats accumulates one phase of the benchmark over its iterations.
type phaseStats struct {
	lines, mallocs, writes uint64
	wall                   time.Duration
}

func (p *phaseStats) nsPerLine() float64 { return float64(p.wall.Nanoseconds()) / float64(p.lines) }
func (p *phaseStats) linesPerSec() float64 {
	return float64(p.lines) / p.wall.Seconds()
}
func (p *phaseStats) allocsPerLine() float64 { return float64(p.mallocs) / float64(p.lines) }

// measure runs f, which handles lines lines, and adds its wall time and
// allocations to p.
func (p *phaseStats) measure(lines int, f func()) {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	start := time.Now()
	f()
	p.wall += time.Since(start)
	runtime.ReadMemStats(&m1)
	p.lines += uint64(lines)
	p.mallocs += m1.Mallocs - m0.Mallocs
}

// BenchmarkObserveStream measures `clustermesh observe --follow` on the
// CLI's side alone: the agents' NDJSON answers (recorded, as an agent
// writes them) read, decoded, merged and printed by Run into a pipe that
// is drained, as stdout is. Phases: one agent (its stream printed as it
// comes) -o json and -o compact, two agents (merged through the reordering
// window) -o json. The baselines, measured in the same run on the same
// bytes: the raw floor (bufio.Scanner splitting the lines, nothing else)
// and encoding/json decoding each line into a flowapi.Line (the decoding
// alone of observe before its own decoder). It prints lines/s, ns/line,
// allocs/line and writes/line of each phase and the ratio to the floor.
func BenchmarkObserveStream(b *testing.B) {
	start := time.Date(2026, 12, 4, 4, 0, 0, 0, time.UTC)
	one := byteSource{"n1": floodStream("n1", streamLines, start, 10*time.Microsecond)}
	two := byteSource{"n1": floodStream("n1", streamLines, start, 10*time.Microsecond),
		"n2": floodStream("n2", streamLines, start.Add(5*time.Microsecond), 10*time.Microsecond)}
	var floor, decode phaseStats
	phases := []struct {
		name   string
		unit   string
		src    byteSource
		format string
		stats  phaseStats
	}{
		{"1 agent, -o json", "1agent-json", one, OutputJSON, phaseStats{}},
		{"1 agent, -o compact", "1agent-compact", one, OutputCompact, phaseStats{}},
		{"2 agents, -o json", "2agents-json", two, OutputJSON, phaseStats{}},
	}
	for b.Loop() {
		raw := one["n1"]
		floor.measure(streamLines, func() {
			sc := bufio.NewScanner(bytes.NewReader(raw))
			sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
			n := 0
			for sc.Scan() {
				n += len(sc.Bytes())
			}
			if n == 0 {
				b.Fatal("no line")
			}
		})
		decode.measure(streamLines, func() {
			sc := bufio.NewScanner(bytes.NewReader(raw))
			sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
			for sc.Scan() {
				var l flowapi.Line
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					b.Fatal(err)
				}
			}
		})
		for i := range phases {
			ph := &phases[i]
			lines := streamLines * len(ph.src)
			sink := newPipeSink(b)
			var warn strings.Builder
			ph.stats.measure(lines, func() {
				p, err := NewPrinter(ph.format, sink, time.UTC)
				if err != nil {
					b.Fatal(err)
				}
				if err := Run(b.Context(), ph.src, Options{Request: flowapi.Request{Follow: true}, Printer: p, Warn: &warn}); err != nil {
					b.Fatal(err)
				}
				sink.close()
			})
			ph.stats.writes += uint64(sink.writes)
			if warn.Len() > 0 {
				b.Fatalf("%s: %s", ph.name, warn.String())
			}
		}
	}
	b.ReportMetric(floor.nsPerLine(), "floor-ns/line")
	b.ReportMetric(decode.nsPerLine(), "encoding/json-ns/line")
	for _, ph := range phases {
		b.ReportMetric(ph.stats.nsPerLine(), ph.unit+"-ns/line")
		b.ReportMetric(ph.stats.allocsPerLine(), ph.unit+"-allocs/line")
	}
	fmt.Printf("observe stream: raw floor (bufio.Scanner) %.0f ns/line (%.0f lines/s); encoding/json decode alone %.0f ns/line, %.1f allocs/line\n",
		floor.nsPerLine(), floor.linesPerSec(), decode.nsPerLine(), decode.allocsPerLine())
	for _, ph := range phases {
		fmt.Printf("observe stream: %-20s %8.0f lines/s, %6.0f ns/line, %5.1f allocs/line, %.3f writes/line; ratio to the floor %.1f\n",
			ph.name, ph.stats.linesPerSec(), ph.stats.nsPerLine(), ph.stats.allocsPerLine(),
			float64(ph.stats.writes)/float64(ph.stats.lines), ph.stats.nsPerLine()/floor.nsPerLine())
	}
}
