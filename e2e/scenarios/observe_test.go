//go:build linux

package scenarios

import (
	"context"
	"encoding/json"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/agent/flowapi"
	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/starwars"
	"github.com/clustermesh/clustermesh/examples"
)

// Scenario: a user finds why a connection across clusters fails with
// `clustermesh observe`, run as a user runs it (the binary, asking every
// node's agent of a cluster). With Cilium's cross-cluster policy example,
// x-wing of cluster1 -> rebel-base-a of cluster2 is FORWARDED (at x-wing's
// egress in cluster1, at rebel-base-a's ingress in cluster2), tie-fighter
// -> rebel-base-a is DROPPED (policy-denied) at rebel-base-a's ingress,
// both ends named by cluster/namespace/pod and identity; `observe --verdict
// dropped --follow` prints a new drop as it happens (the delay from the
// attempt is logged: docs/observe.md).
func testObserve(t *testing.T, w *starwars.World) {
	ctx, b := t.Context(), w.Bed
	raw, err := fs.ReadFile(examples.Manifests, "cross-cluster-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(raw), "\n---\n")
	applied := time.Now() // earlier steps' flows between the same pods are not this policy's
	for i, c := range []string{"cluster1", "cluster2"} {
		if err := b.Cluster(c).Apply(ctx, docs[i]); err != nil {
			t.Fatal(err)
		}
	}
	xwing, tie, base := w.Pod("cluster1/x-wing"), w.Pod("cluster1/tie-fighter"), w.Pod("cluster2/rebel-base-a")
	refused(t, b, tie, base)
	reach(t, b, xwing, base)
	ids := map[*bed.Pod]uint32{}
	for _, p := range []*bed.Pod{xwing, tie, base} {
		id, err := base.Node.Identity(ctx, p.IP.String())
		if err != nil {
			t.Fatal(err)
		}
		ids[p] = id
	}
	c1, c2 := b.Cluster("cluster1"), b.Cluster("cluster2")
	observe := func(c *bed.Cluster, args ...string) string {
		t.Helper()
		out, err := b.CLI(ctx, append(append([]string{"observe", "--context", c.Name}, c.AgentSocketArgs()...), args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	wantEnd := func(e flowapi.Endpoint, p *bed.Pod, what string) {
		t.Helper()
		cluster := p.Node.Cluster().Name
		if e.Cluster != cluster || e.Namespace != p.Namespace || e.Pod != p.Name || e.IP != p.IP || e.Identity != ids[p] ||
			!slices.Contains(e.Labels, "k8s:io.cilium.k8s.policy.cluster="+cluster) || !slices.Contains(e.Labels, "k8s:name="+p.Labels["name"]) {
			t.Errorf("%s: %+v, want %s (%v) identity %d with its cluster and name labels", what, e, p, p.IP, ids[p])
		}
	}
	// The forwarded connection, at both ends.
	for _, at := range []struct {
		c         *bed.Cluster
		direction string
	}{{c1, flowapi.DirectionEgress}, {c2, flowapi.DirectionIngress}} {
		f := findFlow(t, observe(at.c, "--from-cluster", "cluster1", "--from-pod", "default/x-wing", "--to-pod", "default/rebel-base-a",
			"--verdict", "forwarded", "--last", "5", "-o", "json"), func(f *flowapi.Flow) bool {
			return f.Direction == at.direction && f.TCPFlags == flowapi.SYN && !f.Time.Before(applied)
		}, "x-wing's forwarded SYN at "+at.direction+" in "+at.c.Name+" since the policy was applied")
		if f.Verdict != flowapi.VerdictForwarded || f.Reason != "policy-allow" || f.Protocol != flowapi.ProtoTCP || f.Dst.Port != bed.WorkloadPort ||
			f.Node != xwing.Node.Name && f.Node != base.Node.Name {
			t.Errorf("x-wing -> rebel-base-a in %s: %+v, want FORWARDED (policy-allow) TCP to port 80 on x-wing's or rebel-base-a's node", at.c.Name, f)
		}
		wantEnd(f.Src, xwing, "source of the forwarded flow in "+at.c.Name)
		wantEnd(f.Dst, base, "destination of the forwarded flow in "+at.c.Name)
	}
	// The drop, as a user asks for it: compact, then JSON for the fields.
	out := observe(c2, "--verdict", "dropped", "--from-cluster", "cluster1", "--to-pod", "default/rebel-base-a", "--last", "3")
	if want := " -> cluster2/default/rebel-base-a:80 TCP SYN DROPPED (policy-denied)"; !strings.Contains(out, "cluster1/default/tie-fighter:") || !strings.Contains(out, want) {
		t.Errorf("clustermesh observe --verdict dropped:\n%s\nwant cluster1/default/tie-fighter:<port>%s", out, want)
	}
	drop := findFlow(t, observe(c2, "--verdict", "dropped", "--from-pod", "default/tie-fighter", "--to-pod", "default/rebel-base-a", "--last", "1", "-o", "json"),
		func(f *flowapi.Flow) bool { return !f.Time.Before(applied) }, "tie-fighter's dropped SYN in cluster2")
	if drop.Verdict != flowapi.VerdictDropped || drop.Reason != "policy-denied" || drop.Direction != flowapi.DirectionIngress ||
		drop.Node != base.Node.Name || drop.Protocol != flowapi.ProtoTCP || drop.TCPFlags != flowapi.SYN || drop.Dst.Port != bed.WorkloadPort {
		t.Errorf("tie-fighter -> rebel-base-a: %+v, want DROPPED (policy-denied) at rebel-base-a's ingress on %s, a TCP SYN to port 80", drop, base.Node.Name)
	}
	wantEnd(drop.Src, tie, "source of the drop")
	wantEnd(drop.Dst, base, "destination of the drop")
	observe(c2, "--verdict", "dropped", "--from-pod", "default/tie-fighter", "--last", "1", "-o", "table")

	// The second command of docs/observe.md: the policy responsible, from
	// the agents of both clusters (TestMesh/PolicyTrace checks its fields).
	for _, tr := range []struct {
		from    *bed.Pod
		verdict string
	}{{tie, "DENIED"}, {xwing, "ALLOWED"}} {
		args := append(append([]string{"policy", "trace"}, append(c1.AgentSocketArgs(), c2.AgentSocketArgs()...)...),
			"--from", tr.from.String(), "--to", base.String(), "--port", "80/TCP")
		out, err := b.CLI(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^VERDICT +`+tr.verdict+`$`).MatchString(out) || !strings.Contains(out, "allow-cross-cluster") {
			t.Errorf("clustermesh policy trace --from %s:\n%s\nwant VERDICT %s naming the policy allow-cross-cluster", tr.from, out, tr.verdict)
		}
	}

	// --follow: a new drop is printed as it happens.
	delays := followDrops(t, b, c2, tie, base, 5)
	b.Logf("    observe --verdict dropped --follow (%d agents, merged through a %v window): printed %v after each attempt (p50 %v, max %v)",
		len(c2.Nodes), 250*time.Millisecond, delays, slices.Sorted(slices.Values(delays))[len(delays)/2], slices.Max(delays))

	// The next steps expect no policy.
	for _, c := range []string{"cluster1", "cluster2"} {
		if err := b.Cluster(c).Delete(ctx, "ClusterMeshNetworkPolicy", starwars.Namespace, "allow-cross-cluster"); err != nil {
			t.Fatal(err)
		}
	}
	reach(t, b, tie, base)
}

// findFlow returns the first flow of observe's JSON lines that match
// accepts.
func findFlow(t *testing.T, out string, match func(*flowapi.Flow) bool, what string) *flowapi.Flow {
	t.Helper()
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		var f flowapi.Flow
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("observe -o json: line %q: %v", line, err)
		}
		if match(&f) {
			return &f
		}
	}
	t.Fatalf("%s: not in the output of observe:\n%s", what, out)
	return nil
}

// followDrops runs `observe --verdict dropped --follow` on cluster c and
// makes rounds denied connection attempts from one pod to another, one at a
// time; it returns, for each, how long after the attempt began observe
// printed its drop (the first line of a flow the kernel saw after that
// time: a late retransmission of an earlier attempt does not count).
func followDrops(t *testing.T, b *bed.Bed, c *bed.Cluster, from, to *bed.Pod, rounds int) []time.Duration {
	t.Helper()
	ctx := t.Context()
	type printed struct {
		at   time.Time
		flow flowapi.Flow
	}
	var (
		mu    sync.Mutex
		lines []printed
		bad   []string
	)
	args := append(append([]string{"observe", "--context", c.Name}, c.AgentSocketArgs()...),
		"--verdict", "dropped", "--follow", "--from-cluster", from.Node.Cluster().Name, "--from-pod", from.Namespace+"/"+from.Name, "-o", "json")
	s, err := b.StartCLI(ctx, func(at time.Time, line string) {
		var f flowapi.Flow
		mu.Lock()
		defer mu.Unlock()
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			bad = append(bad, line)
			return
		}
		lines = append(lines, printed{at, f})
	}, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
		if len(bad) > 0 {
			t.Errorf("observe -o json printed lines that are not flows: %q", bad)
		}
	}()
	// printedAfter returns the first printed drop of a flow the kernel saw
	// after t0.
	printedAfter := func(t0 time.Time) (printed, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range lines {
			if !p.flow.Time.Before(t0) && p.flow.Dst.IP == to.IP && p.flow.Reason == "policy-denied" {
				return p, true
			}
		}
		return printed{}, false
	}
	attempt := func() time.Time {
		t0 := time.Now()
		r := dial(t, from, to.Addr(), "followed")
		if r.Error == "" {
			t.Fatalf("%s -> %s connected (%q): want dropped", from, to, r.Reply)
		}
		return t0
	}
	// The stream is open once a drop is printed: attempts until then.
	first := time.Now()
	if err := b.WaitUntil(ctx, 20*time.Second, "observe --follow printing a drop of "+from.String(), func(context.Context) (bool, string) {
		_, ok := printedAfter(first)
		if !ok {
			attempt()
		}
		_, ok = printedAfter(first)
		return ok, s.Stderr()
	}); err != nil {
		t.Fatal(err)
	}
	var delays []time.Duration
	for range rounds {
		t0 := attempt() // returns after the attempt timed out (1 s)
		var p printed
		if err := b.WaitUntil(ctx, 10*time.Second, "observe --follow printing the drop of the attempt at "+t0.Format("15:04:05.000"), func(context.Context) (bool, string) {
			var ok bool
			p, ok = printedAfter(t0)
			return ok, s.Stderr()
		}); err != nil {
			t.Fatal(err)
		}
		delays = append(delays, p.at.Sub(t0).Round(time.Millisecond))
		if p.flow.Src.Pod != from.Name || p.flow.Src.Cluster != from.Node.Cluster().Name || p.flow.Verdict != flowapi.VerdictDropped {
			t.Errorf("followed drop %+v, want one from %s", p.flow, from)
		}
	}
	return delays
}
