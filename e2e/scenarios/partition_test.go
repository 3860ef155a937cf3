//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/cli/status"
	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/starwars"
	"github.com/clustermesh/clustermesh/e2e/workload"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// partitionFor is how long testPartitionHeals cuts the control plane: 60 s
// with CLUSTERMESH_SOAK=1 (fault suite R2), a few seconds in make test.
func partitionFor() time.Duration {
	if os.Getenv("CLUSTERMESH_SOAK") == "1" {
		return 60 * time.Second
	}
	return 5 * time.Second
}

// Fault suite R2: the control plane between cluster1 and cluster2 is cut
// (each clustermesh-apiserver's cache loses the other's etcd; packets
// dropped) for partitionFor(). Established connections across the clusters
// keep exchanging both ways and new ones still work (the datapath keeps its
// state); cluster1's agents keep every entry of cluster2 (nothing pruned)
// and do not learn what changes in cluster2 until the heal; after it, they
// learn it, and the time from the heal is printed (target 5 s, failure only
// past 60 s). The relabeled pod gets its labels back before the step ends.
func testPartitionHeals(t *testing.T, w *starwars.World) {
	ctx, b := t.Context(), w.Bed
	d := partitionFor()
	xwing1, base2 := w.Pod("cluster1/x-wing"), w.Pod("cluster2/rebel-base-a")
	xwing2, base1 := w.Pod("cluster2/x-wing"), w.Pod("cluster1/rebel-base-a")
	held := map[*workload.Conn]*bed.Pod{holdConn(t, xwing1, base2): base2, holdConn(t, xwing2, base1): base1}
	exchange := func(msg string) {
		t.Helper()
		for c, to := range held {
			exchangeOn(t, c, to, msg)
		}
	}
	var remote []string
	for _, name := range []string{"rebel-base-a", "rebel-base-b", "x-wing", "tie-fighter"} {
		remote = append(remote, w.Pod("cluster2/"+name).IP.String()+"/32")
	}
	var stops []func() []string
	for _, n := range b.Cluster("cluster1").Nodes {
		stops = append(stops, watchEntries(ctx, n, remote))
	}
	// The pod cluster2 relabels during the cut: its identity changes.
	moved := w.Pod("cluster2/tie-fighter")
	ip := moved.IP.String()
	before := identityOn(t, moved.Node, ip)
	for _, n := range b.Cluster("cluster1").Nodes {
		waitIdentity(t, b, n, ip, before, 30*time.Second)
	}

	heal, err := b.Partition(ctx, "cluster1", "cluster2")
	if err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	t.Cleanup(func() {
		if err := heal(); err != nil {
			t.Error(err)
		}
	})
	exchange("partitioned")
	reach(t, b, xwing1, w.Pod("cluster2/rebel-base-b"))
	reach(t, b, xwing2, w.Pod("cluster1/rebel-base-b"))
	setLabel(t, moved, "partition", "cut")
	after := 0
	if err := b.WaitUntil(ctx, 30*time.Second, "a new identity for "+moved.String()+" in its own cluster", func(ctx context.Context) (bool, string) {
		id, err := moved.Node.Identity(ctx, ip)
		if err != nil {
			return false, err.Error()
		}
		after = int(id)
		return id != before && id > maxReserved, fmt.Sprint(id) // init (5) until its new identity is known
	}); err != nil {
		t.Fatal(err)
	}
	r := statusDuringCut(t, b, cut)
	b.Logf("    status of cluster1 during the partition: peers %+v, cache %+v, errors %v, warnings %v", r.Peers, r.APIServer.Cache, r.Errors, r.Warnings)
	for _, cp := range r.APIServer.Cache {
		if cp.Name == "cluster2" && (!cp.Complete() || cp.Entries["ip"] == 0) {
			t.Errorf("cluster1's cache of cluster2 during the partition: synced %v, entries %v; want its last-known state kept", cp.Synced, cp.Entries)
		}
	}
	if rest := d - time.Since(cut); rest > 0 {
		// The partition's length is the fault itself, not a guess at how
		// long something takes: held connections exchange every second.
		for end := time.Now().Add(rest); time.Now().Before(end); {
			exchange("partitioned")
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(time.Second):
			}
		}
	}
	for _, n := range b.Cluster("cluster1").Nodes {
		if id := identityOn(t, n, ip); id != before {
			t.Errorf("agent of %s has identity %d for %s after %s cut off from cluster2 (before the cut %d, in cluster2 now %d): the partition did not cut the control plane",
				n.Name, id, moved, time.Since(cut).Round(time.Second), before, after)
		}
	}
	reach(t, b, xwing1, w.Pod("cluster2/rebel-base-b"))
	exchange("before-heal")
	b.Logf("    partition held %s; the held connections exchanged throughout", time.Since(cut).Round(100*time.Millisecond))

	if err := heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	for _, n := range b.Cluster("cluster1").Nodes {
		waitIdentity(t, b, n, ip, uint32(after), 60*time.Second)
	}
	conv := time.Since(healed)
	b.Logf("    R2: partition %s, cluster1's agents had cluster2's change %.2f s after the heal (target <= 5 s)", d, conv.Seconds())
	t.Logf("R2 convergence after heal: %.3f s (partition %s, target 5 s)", conv.Seconds(), d)
	if cached(r) {
		if err := b.WaitUntil(ctx, 30*time.Second, "status of cluster1: the cache connected to cluster2 again", func(context.Context) (bool, string) {
			c := cachedPeer(statusOf(t, b, b.Cluster("cluster1")), "cluster2")
			return c != nil && c.Connection != nil && c.Connection.Connected, fmt.Sprintf("%+v", c)
		}); err != nil {
			t.Error(err)
		}
		b.Logf("    status shows the cache connected to cluster2 again %.1f s after the heal", time.Since(healed).Seconds())
	}
	exchange("healed")
	for i, stop := range stops {
		if missing := stop(); len(missing) > 0 {
			t.Errorf("cluster2's pods left the ipcache of %s during the partition or the heal: %v", b.Cluster("cluster1").Nodes[i].Name, missing)
		}
	}

	// Leave the state as found: the pod's labels and identity back.
	setLabel(t, moved, "partition", "")
	restored := identityOnWait(t, b, moved, uint32(after))
	for _, n := range b.Cluster("cluster1").Nodes {
		waitIdentity(t, b, n, ip, restored, 60*time.Second)
	}
}

// statusDuringCut returns cluster1's status once it shows the cut (in
// cache mode): the cache published that it lost cluster2, with an error
// that says so and a mesh that status --wait does not take as complete.
// The partition lasts at least until then.
func statusDuringCut(t *testing.T, b *bed.Bed, cut time.Time) status.Report {
	t.Helper()
	r := statusOf(t, b, b.Cluster("cluster1"))
	if !cached(r) {
		return r // agents read cluster2 directly: the cut is not theirs
	}
	if err := b.WaitUntil(t.Context(), 30*time.Second, "status of cluster1 showing its cache cut off from cluster2", func(context.Context) (bool, string) {
		r = statusOf(t, b, b.Cluster("cluster1"))
		c := cachedPeer(r, "cluster2")
		return c != nil && c.Connection != nil && !c.Connection.Connected, fmt.Sprintf("%+v", c)
	}); err != nil {
		t.Fatal(err)
	}
	b.Logf("    status shows the cache cut off from cluster2 %.1f s after the cut", time.Since(cut).Seconds())
	named := false
	for _, e := range r.Errors {
		named = named || (e.Peer == "cluster2" && strings.Contains(e.Message, "not connected to this peer") && strings.Contains(e.Message, "unreachable"))
	}
	if !named {
		t.Errorf("status of cluster1 during the partition has no error naming the cache's lost connection to cluster2: %+v", r.Errors)
	}
	if ok, missing := r.Complete(); ok {
		t.Errorf("status of cluster1 complete during the partition (missing %v): status --wait would not wait for the heal", missing)
	}
	return r
}

// cached reports whether the report's cache holds cluster2 with its
// connection state (the bed runs the cache unless direct).
func cached(r status.Report) bool {
	c := cachedPeer(r, "cluster2")
	return c != nil && c.Connection != nil
}

func cachedPeer(r status.Report, name string) *status.CachedPeer {
	for i := range r.APIServer.Cache {
		if r.APIServer.Cache[i].Name == name {
			return &r.APIServer.Cache[i]
		}
	}
	return nil
}

// maxReserved is the highest reserved identity (ingress, 8).
const maxReserved = 8

// identityOn is the identity the node's agent has for ip.
func identityOn(t *testing.T, n *bed.Node, ip string) uint32 {
	t.Helper()
	id, err := n.Identity(t.Context(), ip)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// identityOnWait waits until the pod's own agent has an identity for it
// other than old (the one of the labels removed), and returns it.
func identityOnWait(t *testing.T, b *bed.Bed, p *bed.Pod, old uint32) uint32 {
	t.Helper()
	var id uint32
	if err := b.WaitUntil(t.Context(), 30*time.Second, "the identity of "+p.String()+" back in its own cluster", func(ctx context.Context) (bool, string) {
		got, err := p.Node.Identity(ctx, p.IP.String())
		if err != nil {
			return false, err.Error()
		}
		id = got
		return got != old && got > maxReserved, fmt.Sprintf("%d, was %d", got, old)
	}); err != nil {
		t.Fatal(err)
	}
	return id
}

// waitIdentity polls the node's agent every 50 ms until it has identity
// want for ip.
func waitIdentity(t *testing.T, b *bed.Bed, n *bed.Node, ip string, want uint32, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var last string
	for {
		id, err := n.Identity(ctx, ip)
		if err == nil && id == want {
			return
		}
		last = fmt.Sprintf("identity %d (%v)", id, err)
		select {
		case <-ctx.Done():
			t.Fatalf("agent of %s: identity %d for %s not reached in %s: last %s", n.Name, want, ip, d, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// setLabel sets (value "" removes) a label of the pod's object, as a user
// relabeling it would.
func setLabel(t *testing.T, p *bed.Pod, key, value string) {
	t.Helper()
	pods := p.Node.Cluster().Client.CoreV1().Pods(p.Namespace)
	obj, err := pods.Get(t.Context(), p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if obj.Labels == nil {
		obj.Labels = map[string]string{}
	}
	if value == "" {
		delete(obj.Labels, key)
	} else {
		obj.Labels[key] = value
	}
	if _, err := pods.Update(t.Context(), obj, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("relabel %s: %v", p, err)
	}
}
