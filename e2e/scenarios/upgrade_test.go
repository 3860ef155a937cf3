//go:build linux

package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clustermesh/clustermesh/cli/mesh"
	"github.com/clustermesh/clustermesh/cli/status"
	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/workload"
	"github.com/clustermesh/clustermesh/internal/version"
)

// TestUpgradeUnderTraffic installs two clusters of two nodes with
// `clustermesh install` and connects them, holds four TCP connections
// between pods across the clusters (every node at one end of two), then
// upgrades the agents one node at a time to the next minor version (the
// agent binary rebuilt with that version, restarted in place as a
// DaemonSet's rolling update does) while every held connection keeps
// exchanging. After each node: every held connection still answers (the
// same connection, in sync), new connections work between every pair of
// pods across the clusters, `clustermesh status` counts the new version on
// the upgraded nodes and the old one on the others, without a version
// warning (one minor apart). An agent two minors ahead is warned about,
// and the warning goes when it is brought back. Then `clustermesh
// disconnect` and `clustermesh uninstall` of both clusters: no object of
// the release, nor the release, remains.
func TestUpgradeUnderTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts whole clusters (kube-apiservers, controller managers, clustermesh-apiservers, agents, pods)")
	}
	log := &testLog{t: t}
	b := startBed(t, log)
	ctx := t.Context()
	var clusters []*bed.Cluster
	for i, name := range []string{"cluster1", "cluster2"} {
		c, err := b.AddCluster(ctx, bed.ClusterSpec{Name: name, ID: uint32(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		clusters = append(clusters, c)
	}
	if err := b.Connect(ctx, "cluster1", "cluster2"); err != nil {
		t.Fatal(err)
	}
	pods := map[*bed.Node]*bed.Pod{}
	var nodes []*bed.Node
	for _, c := range clusters {
		for _, n := range c.Nodes {
			p, err := n.AddPod(ctx, "default", "echo-"+n.Name, map[string]string{"app": "echo"})
			if err != nil {
				t.Fatal(err)
			}
			pods[n], nodes = p, append(nodes, n)
		}
	}
	c1a, c1b, c2a, c2b := pods[nodes[0]], pods[nodes[1]], pods[nodes[2]], pods[nodes[3]]
	reachAcross(t, b, clusters, pods)
	held := []*flow{{from: c1a, to: c2a}, {from: c1b, to: c2b}, {from: c2a, to: c1b}, {from: c2b, to: c1a}}
	for _, f := range held {
		f.c = holdConn(t, f.from, f.to)
	}

	old := version.Get().Version // the bed's binaries are built as this test is
	next, ahead := minorUp(t, old, 1), minorUp(t, old, 2)
	nextBin, err := b.BuildAgent(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	upgraded := map[string]bool{}
	for _, n := range nodes {
		restartUnderTraffic(t, b, n, nextBin, held)
		upgraded[n.Name] = true
		reachAcross(t, b, clusters, pods)
		for _, c := range clusters {
			want := map[string][]string{}
			for _, o := range c.Nodes {
				v := old
				if upgraded[o.Name] {
					v = next
				}
				want[v] = append(want[v], o.Name)
			}
			r := statusOf(t, b, c)
			checkVersions(t, r, want)
			if w := versionWarnings(r); len(w) > 0 {
				t.Errorf("%s with agents %v: version warnings %v, want none (one minor apart)", c.Name, want, w)
			}
		}
	}

	// Two minors ahead of this CLI: warned about, until brought back.
	aheadBin, err := b.BuildAgent(ctx, ahead)
	if err != nil {
		t.Fatal(err)
	}
	n := nodes[0]
	restartUnderTraffic(t, b, n, aheadBin, held)
	r := statusOf(t, b, clusters[0])
	checkVersions(t, r, map[string][]string{ahead: {n.Name}, next: {nodes[1].Name}})
	if w := versionWarnings(r); len(w) != 1 || !strings.Contains(w[0], ahead+" (agents on "+n.Name+")") || !strings.Contains(w[0], old+" (this CLI)") {
		t.Errorf("agent %s on %s, the CLI %s: version warnings %v, want one naming both", ahead, n.Name, old, w)
	}
	restartUnderTraffic(t, b, n, nextBin, held)
	if w := versionWarnings(statusOf(t, b, clusters[0])); len(w) > 0 {
		t.Errorf("every agent back on %s: version warnings %v", next, w)
	}

	// Disconnect, then uninstall both clusters.
	if err := b.Disconnect(ctx, "cluster1", "cluster2"); err != nil {
		t.Fatal(err)
	}
	for _, c := range clusters {
		out, err := b.CLI(ctx, "uninstall", "--context", c.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"uninstalled Helm release clustermesh", "DaemonSet/clustermesh-agent", "Deployment/clustermesh-apiserver",
			"deleted Secret kube-system/clustermesh-peers", "deleted CRD identities.clustermesh.io"} {
			if !strings.Contains(out, w) {
				t.Errorf("uninstall of %s: output lacks %q", c.Name, w)
			}
		}
		if strings.Contains(out, "deleted namespace") {
			t.Errorf("uninstall of %s deleted kube-system, which install did not create", c.Name)
		}
		checkUninstalled(t, c)
		if err := c.StopMesh(); err != nil {
			t.Fatal(err)
		}
	}
}

// flow is a held connection between two pods and what its exchanges saw.
type flow struct {
	from, to *bed.Pod
	c        *workload.Conn
	// seq numbers the messages sent; answered is the highest number
	// answered.
	seq, answered int
}

func (f *flow) String() string { return f.from.String() + " -> " + f.to.String() }

// exchange sends the next numbered message and reports whether it got a
// fresh answer from the peer pod: to one of the messages sent, newer than
// the last one answered. An exchange that timed out leaves its answer to a
// later one (each exchange writes one line and reads one), so after a
// timeout the answers lag the messages; they still come in order, on the
// same connection.
func (f *flow) exchange(ctx context.Context, tag string) (bool, string) {
	f.seq++
	msg := tag + "-" + strconv.Itoa(f.seq)
	reply, err := f.c.Exchange(ctx, msg)
	if err != nil {
		return false, err.Error()
	}
	rest, ok := strings.CutPrefix(reply, f.to.String()+" ")
	i := strings.LastIndexByte(rest, '-')
	if !ok || i < 0 {
		return false, reply
	}
	n, err := strconv.Atoi(rest[i+1:])
	if err != nil || n <= f.answered || n > f.seq {
		return false, reply
	}
	f.answered = n
	return true, reply
}

// restartUnderTraffic restarts the agent of n as binary while every held
// connection keeps exchanging, waits until both clusters' agents are
// connected and synced again, then checks that every held connection
// still answers its own messages within 30 s.
func restartUnderTraffic(t *testing.T, b *bed.Bed, n *bed.Node, binary string, held []*flow) {
	t.Helper()
	ctx := t.Context()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stats := make([]string, len(held))
	for i, f := range held {
		wg.Go(func() {
			ok, failed, start := 0, 0, time.Now()
			lastOK, longest := start, time.Duration(0)
			for {
				select {
				case <-stop:
					stats[i] = fmt.Sprintf("%s: %d answered, %d not (longest wait for an answer %v)", f, ok, failed, longest.Round(time.Millisecond))
					return
				default:
				}
				good, _ := f.exchange(ctx, "during-"+n.Name)
				longest = max(longest, time.Since(lastOK)) // an answer ends the gap when it arrives
				if good {
					ok++
					lastOK = time.Now()
				} else {
					failed++
					time.Sleep(100 * time.Millisecond) // the pod's exchange already waited up to 2 s
				}
			}
		})
	}
	err := n.RestartAgent(ctx, binary)
	if err == nil {
		for _, c := range []string{"cluster1", "cluster2"} {
			if err = b.WaitStatus(ctx, c); err != nil {
				break
			}
		}
	}
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		t.Logf("    while %s restarted: %s", n.Name, s)
	}
	for _, f := range held {
		deadline := time.Now().Add(30 * time.Second)
		var last string
		for {
			good, seen := f.exchange(ctx, "after-"+n.Name)
			if good {
				break
			}
			last = seen
			if time.Now().After(deadline) {
				t.Fatalf("held connection %s (%s -> %s) after the agent of %s restarted: last answer %q", f, f.c.Local, f.c.Remote, n.Name, last)
			}
		}
	}
}

// reachAcross: a new connection works from every pod to every pod of the
// other cluster.
func reachAcross(t *testing.T, b *bed.Bed, clusters []*bed.Cluster, pods map[*bed.Node]*bed.Pod) {
	t.Helper()
	for _, a := range clusters[0].Nodes {
		for _, z := range clusters[1].Nodes {
			reach(t, b, pods[a], pods[z])
			reach(t, b, pods[z], pods[a])
		}
	}
}

// statusOf is `clustermesh status -o json` of the cluster, asking every
// node's agent on its socket.
func statusOf(t *testing.T, b *bed.Bed, c *bed.Cluster) status.Report {
	t.Helper()
	args := []string{"status", "--context", c.Name, "-o", "json"}
	for _, n := range c.Nodes {
		args = append(args, "--agent-socket", n.Name+"="+n.Socket)
	}
	out, err := b.CLI(t.Context(), args...)
	if err != nil {
		t.Fatal(err)
	}
	var r status.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	return r
}

func checkVersions(t *testing.T, r status.Report, want map[string][]string) {
	t.Helper()
	got := map[string][]string{}
	for _, v := range r.Versions {
		got[v.Version] = v.Nodes
	}
	for v := range want {
		slices.Sort(want[v])
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: status counts agent versions %v, want %v", r.Cluster, got, want)
	}
}

func versionWarnings(r status.Report) []string {
	var out []string
	for _, w := range r.Warnings {
		if strings.Contains(w.Message, "versions differ") {
			out = append(out, w.Message)
		}
	}
	return out
}

// minorUp is v with its minor version raised by n: v0.7.0-dev, 1 -> v0.8.0.
func minorUp(t *testing.T, v string, n int) string {
	t.Helper()
	m := regexp.MustCompile(`^v(\d+)\.(\d+)\.`).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("version %q is not vMAJOR.MINOR.PATCH", v)
	}
	minor, _ := strconv.Atoi(m[2])
	return fmt.Sprintf("v%s.%d.0", m[1], minor+n)
}

// checkUninstalled: none of the release's workloads, Secrets or its
// history remain in the cluster's kube-system.
func checkUninstalled(t *testing.T, c *bed.Cluster) {
	t.Helper()
	ctx, ns := t.Context(), mesh.DefaultNamespace
	if _, err := c.Client.AppsV1().DaemonSets(ns).Get(ctx, mesh.AgentName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("%s: DaemonSet %s after uninstall: %v", c.Name, mesh.AgentName, err)
	}
	if _, err := c.Client.AppsV1().Deployments(ns).Get(ctx, mesh.APIServerName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("%s: Deployment %s after uninstall: %v", c.Name, mesh.APIServerName, err)
	}
	for _, sel := range []string{"app.kubernetes.io/part-of=clustermesh", "owner=helm,name=clustermesh"} {
		secrets, err := c.Client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets.Items {
			t.Errorf("%s: Secret %s (%s) after uninstall", c.Name, s.Name, sel)
		}
	}
	cms, err := c.Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=clustermesh"})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		t.Errorf("%s: ConfigMap %s after uninstall", c.Name, cm.Name)
	}
}
