//go:build linux

package scenarios

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/workload"
)

// The flood of BenchmarkObserveFlood.
const (
	floodRate     = 100_000 // denied datagrams per second
	floodDuration = 10 * time.Second
	floodPort     = 9999
	floodSport    = 40000
)

// BenchmarkObserveFlood floods a pod with denied UDP datagrams (100k/s for
// 10 s, crafted frames from another pod of the same node: bed.Pod.FloodUDP)
// on a one-node cluster of the bed, the clustermesh-agent binary with the
// eBPF datapath, and prints:
//   - the agent's CPU (/proc/<pid>/stat) per 100k flows/s, without and
//     with an `observe --follow --verdict dropped -o json` client (the
//     binary, reading every drop), against the agent idle;
//   - the events lost at that rate, counted by the agent (its metrics) and
//     said by observe (its '#' lines), against the drops the kernel counted
//     (the datapath's pinned metrics map);
//   - GET /v1/status latency during the floods against idle (p50, p99 and
//     their ratio);
//   - the delay from a drop in the kernel (the flow's time) to the line
//     observe printed, p50 and p99, during the flood against 200 drops/s.
//
// The rate the generator reached is printed: 2 cores are shared with the
// agent and everything else.
func BenchmarkObserveFlood(b *testing.B) {
	tb := startBed(b, nil)
	ctx := b.Context()
	c, err := tb.AddCluster(ctx, bed.ClusterSpec{Name: "cluster1", ID: 1, Nodes: 1})
	if err != nil {
		b.Fatal(err)
	}
	n := c.Nodes[0]
	pods := map[string]*bed.Pod{}
	for _, name := range []string{"rebel-base", "x-wing", "tie-fighter"} {
		if pods[name], err = n.AddPod(ctx, "default", name, map[string]string{"name": name}); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.Apply(ctx, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: rebel-base, namespace: default}
spec:
  podSelector: {matchLabels: {name: rebel-base}}
  ingress:
  - from:
    - podSelector: {matchLabels: {name: x-wing}}
`); err != nil {
		b.Fatal(err)
	}
	base, tie := pods["rebel-base"], pods["tie-fighter"]
	for _, p := range []struct {
		from  *bed.Pod
		allow bool
	}{{pods["x-wing"], true}, {tie, false}} {
		if err := tb.WaitUntil(ctx, 30*time.Second, fmt.Sprintf("%s -> %s allowed=%v", p.from, base, p.allow), func(ctx context.Context) (bool, string) {
			r, err := p.from.Dial(ctx, workload.DialRequest{Addr: base.Addr(), Message: "x", TimeoutMS: 500})
			if err != nil {
				return false, err.Error()
			}
			return (r.Error == "") == p.allow, r.Reply + r.Error
		}); err != nil {
			b.Fatal(err)
		}
	}
	pid, err := n.AgentPID()
	if err != nil {
		b.Fatal(err)
	}
	m := &floodMeter{b: b, node: n, pid: pid, target: netip.AddrPortFrom(base.IP, floodPort), from: tie}
	for b.Loop() {
		m.run(ctx, tb, c)
	}
}

// floodMeter measures one node's agent through the floods of a benchmark.
type floodMeter struct {
	b      *testing.B
	node   *bed.Node
	pid    int
	target netip.AddrPort
	from   *bed.Pod
}

// phase is what one period of a benchmark saw.
type phase struct {
	sent                   bed.FloodResult
	wall                   time.Duration // from the flood's start until every event was read or counted lost
	end                    time.Time     // of wall
	cpu                    float64       // agent CPU seconds in wall
	kernel, recorded, lost float64       // drops the kernel counted, flows the agent recorded, events it lost
	status                 []float64     // GET /v1/status latencies, ms
	statusErrors           int
}

func (m *floodMeter) run(ctx context.Context, tb *bed.Bed, c *bed.Cluster) {
	b := m.b
	idle := m.measure(ctx, 0, floodDuration)
	idleCores := idle.cpu / idle.wall.Seconds()
	alone := m.measure(ctx, floodRate, floodDuration)

	// The follower: every drop of the node, as JSON lines, timed as read.
	var (
		mu     sync.Mutex
		delays []float64 // ms from the kernel's time to the printed line
		lines  int
		bad    int
	)
	reset := func() (d []float64, l int) {
		mu.Lock()
		defer mu.Unlock()
		d, l, delays, lines = delays, lines, nil, 0
		return d, l
	}
	follower, err := tb.StartCLI(ctx, func(at time.Time, line string) {
		t, ok := flowTime(line)
		mu.Lock()
		defer mu.Unlock()
		lines++
		if !ok {
			bad++
			return
		}
		delays = append(delays, float64(at.Sub(t).Microseconds())/1000)
	}, append(append([]string{"observe", "--context", c.Name}, c.AgentSocketArgs()...), "--follow", "--verdict", "dropped", "-o", "json")...)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = follower.Stop() }()
	if err := tb.WaitUntil(ctx, 20*time.Second, "observe --follow printing a drop", func(ctx context.Context) (bool, string) {
		if _, err := m.from.FloodUDP(ctx, m.target, floodSport, 100, 100*time.Millisecond); err != nil {
			b.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return lines > 0, follower.Stderr()
	}); err != nil {
		b.Fatal(err)
	}
	reset()
	slow := m.measure(ctx, 200, 3*time.Second)
	slowDelays, slowLines := reset()
	observePID := follower.PID()
	obs0, err := cpuSeconds(observePID)
	if err != nil {
		b.Fatal(err)
	}
	followed := m.measure(ctx, floodRate, floodDuration)
	// observe reads the agent's stream behind the flood: the phase ends
	// when every drop of it was printed or said skipped, and every event
	// lost while it followed said lost.
	var drained time.Duration
	if err := tb.WaitUntil(ctx, 2*time.Minute, "observe --follow printing the flood's drops or saying them skipped", func(context.Context) (bool, string) {
		mu.Lock()
		printed := lines
		mu.Unlock()
		said := observeLosses(follower.Stderr())
		drained = time.Since(followed.end)
		return float64(printed+said.stream) >= followed.recorded && float64(said.datapath) >= slow.lost+followed.lost,
			fmt.Sprintf("%d printed, %d skipped of %.0f; %d of %.0f datapath losses said", printed, said.stream, followed.recorded, said.datapath, slow.lost+followed.lost)
	}); err != nil {
		b.Fatal(err)
	}
	obs1, err := cpuSeconds(observePID)
	if err != nil {
		b.Fatal(err)
	}
	obsWall := followed.wall + drained
	floodDelays, floodLines := reset()
	if err := follower.Stop(); err != nil {
		b.Fatal(err)
	}
	if bad > 0 {
		b.Errorf("observe -o json printed %d lines without a flow time", bad)
	}
	said := observeLosses(follower.Stderr())

	// observe still answers, with the flood's drops.
	out, err := tb.CLI(ctx, append(append([]string{"observe", "--context", c.Name}, c.AgentSocketArgs()...),
		"--verdict", "dropped", "--port", strconv.Itoa(floodPort), "--last", "3")...)
	if err != nil {
		b.Fatal(err)
	}
	if k := strings.Count(out, fmt.Sprintf("-> %s/default/%s:%d UDP DROPPED (policy-denied)\n", c.Name, "rebel-base", floodPort)); k != 3 {
		b.Errorf("observe after the floods: %d of the flood's drops, want 3:\n%s", k, out)
	}

	for _, p := range []struct {
		name string
		ph   phase
	}{{"idle", idle}, {"flood", alone}, {"200/s, followed", slow}, {"flood, followed", followed}} {
		fmt.Printf("observe flood %-16s sent %8d in %5.2fs (%6.0f/s, %d refused by the veth); kernel drops %8.0f; recorded %8.0f; lost (counted) %7.0f; agent %.3f cores over %.1fs; GET /v1/status p50 %.1f ms p99 %.1f ms (%d failed)\n",
			p.name+":", p.ph.sent.Sent, p.ph.sent.Took.Seconds(), p.ph.sent.Rate(), p.ph.sent.Refused, p.ph.kernel, p.ph.recorded, p.ph.lost,
			p.ph.cpu/p.ph.wall.Seconds(), p.ph.wall.Seconds(), pct(p.ph.status, 50), pct(p.ph.status, 99), p.ph.statusErrors)
		if p.ph.statusErrors > 0 {
			b.Errorf("%s: %d GET /v1/status failed: the agent must stay responsive", p.name, p.ph.statusErrors)
		}
		if p.ph.recorded+p.ph.lost != p.ph.kernel {
			b.Errorf("%s: %.0f drops in the kernel, %.0f recorded + %.0f lost: every drop must be a flow or a counted loss", p.name, p.ph.kernel, p.ph.recorded, p.ph.lost)
		}
	}
	// CPU per 100k flows/s: the agent's CPU above idle per recorded flow,
	// times 100k.
	per100k := func(p phase) float64 { return (p.cpu - idleCores*p.wall.Seconds()) / p.recorded * floodRate }
	fmt.Printf("observe flood: agent CPU per 100k flows/s: %.3f cores alone, %.3f cores with observe --follow attached (ratio %.2f); idle %.4f cores; "+
		"the observe process: %.3f cores over %.1fs, printing %d lines (the last %.1fs after the agent recorded the flood's last drop)\n",
		per100k(alone), per100k(followed), per100k(followed)/per100k(alone), idleCores, (obs1-obs0)/obsWall.Seconds(), obsWall.Seconds(), floodLines, drained.Seconds())
	fmt.Printf("observe flood: events lost at %.0f drops/s: %.0f of %.0f alone (%.2f%%), %.0f of %.0f followed (%.2f%%); observe said: %d lost in the datapath, %d skipped by its stream (of %d drops it printed)\n",
		alone.kernel/alone.sent.Took.Seconds(), alone.lost, alone.kernel, 100*alone.lost/alone.kernel, followed.lost, followed.kernel, 100*followed.lost/followed.kernel,
		said.datapath, said.stream, floodLines)
	statusRatio := pct(followed.status, 99) / pct(idle.status, 99)
	fmt.Printf("observe flood: GET /v1/status during the flood p50 %.1f ms p99 %.1f ms (followed: p50 %.1f, p99 %.1f) against idle p50 %.1f ms p99 %.1f ms: ratio p50 %.2f p99 %.2f (followed: %.2f, %.2f)\n",
		pct(alone.status, 50), pct(alone.status, 99), pct(followed.status, 50), pct(followed.status, 99), pct(idle.status, 50), pct(idle.status, 99),
		pct(alone.status, 50)/pct(idle.status, 50), pct(alone.status, 99)/pct(idle.status, 99), pct(followed.status, 50)/pct(idle.status, 50), statusRatio)
	fmt.Printf("observe flood: kernel drop -> line printed by observe --follow: during the flood p50 %.1f ms p99 %.1f ms (%d lines); at 200 drops/s p50 %.1f ms p99 %.1f ms (%d lines); ratio p50 %.2f p99 %.2f\n",
		pct(floodDelays, 50), pct(floodDelays, 99), len(floodDelays), pct(slowDelays, 50), pct(slowDelays, 99), slowLines,
		pct(floodDelays, 50)/pct(slowDelays, 50), pct(floodDelays, 99)/pct(slowDelays, 99))
	b.ReportMetric(per100k(alone), "cores/100k-flows/s")
	b.ReportMetric(per100k(followed), "cores/100k-flows/s-followed")
	b.ReportMetric(alone.lost+followed.lost, "lost-events")
	b.ReportMetric(statusRatio, "status-p99-ratio")
	b.ReportMetric(pct(floodDelays, 99), "print-p99-ms")
}

// measure floods the target at rate for d (rate 0: idle for d) while
// asking GET /v1/status every 20 ms, then waits until every drop the
// kernel counted is a recorded flow or a counted loss.
func (m *floodMeter) measure(ctx context.Context, rate int, d time.Duration) phase {
	b := m.b
	k0, r0, l0 := m.counts(ctx)
	c0, err := cpuSeconds(m.pid)
	if err != nil {
		b.Fatal(err)
	}
	var p phase
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			asked := time.Now()
			var st map[string]any
			if err := m.node.AgentGet(ctx, "/v1/status", &st); err != nil {
				p.statusErrors++
				continue
			}
			p.status = append(p.status, float64(time.Since(asked).Microseconds())/1000)
		}
	})
	if rate > 0 {
		p.sent, err = m.from.FloodUDP(ctx, m.target, floodSport, rate, d)
	} else {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			err = ctx.Err()
		}
		p.sent.Took = d
	}
	close(stop)
	wg.Wait()
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		k, r, l := m.counts(ctx)
		p.kernel, p.recorded, p.lost = k-k0, r-r0, l-l0
		if p.recorded+p.lost >= p.kernel || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the counters until the agent caught up
	}
	p.end = time.Now()
	p.wall = p.end.Sub(start)
	c1, err := cpuSeconds(m.pid)
	if err != nil {
		b.Fatal(err)
	}
	p.cpu = c1 - c0
	return p
}

// counts returns the policy-denied drops the kernel counted at ingress
// (the datapath's pinned metrics), the agent's recorded ones and the
// events it lost in the datapath (its metrics).
func (m *floodMeter) counts(ctx context.Context) (kernel, recorded, lost float64) {
	b := m.b
	km, err := bpf.ReadPinnedMetrics(m.node.BPFPinDir())
	if err != nil {
		b.Fatal(err)
	}
	kernel = float64(km[bpf.MetricKey{Ingress: true, Reason: bpf.ReasonPolicyDenied}].Packets)
	text, err := agentMetrics(ctx, m.node.Socket)
	if err != nil {
		b.Fatal(err)
	}
	recorded = metricValue(text, `clustermesh_agent_drops_total{reason="policy-denied"}`)
	lost = metricValue(text, `clustermesh_agent_flow_events_lost_total{source="datapath"}`)
	return kernel, recorded, lost
}

// agentMetrics returns GET /metrics of the agent at socket.
func agentMetrics(ctx context.Context, socket string) (string, error) {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET /metrics of the agent at %s: %w", socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("GET /metrics of the agent at %s: %w", socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /metrics of the agent at %s: %s", socket, resp.Status)
	}
	return string(body), nil
}

// metricValue returns the value of the sample series (name{labels}) in a
// Prometheus text exposition, 0 if absent.
func metricValue(text, series string) float64 {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// cpuSeconds returns the CPU time (user and system) the process has used,
// from /proc/<pid>/stat (utime and stime, in clock ticks of 1/100 s: Linux's
// USER_HZ).
func cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	f := strings.Fields(s[i+1:])
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return float64(utime+stime) / 100, nil
}

// flowTime returns the time of a flow of observe -o json: the line's
// first field, read without decoding the rest.
func flowTime(line string) (time.Time, bool) {
	v, ok := strings.CutPrefix(line, `{"time":"`)
	if !ok {
		return time.Time{}, false
	}
	v, _, ok = strings.Cut(v, `"`)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

// losses are what observe said was lost while it followed, on its error
// stream.
type losses struct{ datapath, stream int }

var (
	// Not the first status's "... since the agent started": what the
	// follower saw lost while it followed.
	lostInDatapath = regexp.MustCompile(`(?m)^# [^:]+: (\d+) events lost in the datapath \(`)
	skippedStream  = regexp.MustCompile(`(?m)^# [^:]+: (\d+) flows skipped`)
)

func observeLosses(stderr string) losses {
	var l losses
	for _, m := range lostInDatapath.FindAllStringSubmatch(stderr, -1) {
		n, _ := strconv.Atoi(m[1])
		l.datapath += n
	}
	for _, m := range skippedStream.FindAllStringSubmatch(stderr, -1) {
		n, _ := strconv.Atoi(m[1])
		l.stream += n
	}
	return l
}
