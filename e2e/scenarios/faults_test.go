//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/starwars"
	"github.com/clustermesh/clustermesh/e2e/workload"
)

// holdConn opens a TCP connection from one pod to another and checks it
// answers.
func holdConn(t *testing.T, from, to *bed.Pod) *workload.Conn {
	t.Helper()
	c, err := from.Open(t.Context(), to.Addr())
	if err != nil {
		t.Fatalf("%s -> %s: %v", from, to, err)
	}
	t.Cleanup(func() { _ = c.Close(context.WithoutCancel(t.Context())) })
	exchangeOn(t, c, to, "opened")
	return c
}

func exchangeOn(t *testing.T, c *workload.Conn, to *bed.Pod, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// The pod's control API gives each exchange 2 s; TCP retransmits
	// across a short outage, so try a few times before failing.
	var err error
	for range 10 {
		var reply string
		if reply, err = c.Exchange(ctx, msg); err == nil {
			if !strings.HasPrefix(reply, to.String()+" "+msg) {
				t.Fatalf("held connection %s -> %s answered %q", c.Local, c.Remote, reply)
			}
			return
		}
		if ctx.Err() != nil {
			break
		}
	}
	t.Fatalf("held connection %s -> %s: %v", c.Local, c.Remote, err)
}

// Scenario 4: a third cluster joins with `clustermesh connect` while
// traffic flows: established connections are untouched, its backends are
// used by new ones; `disconnect` removes its state from every node.
func testThirdClusterJoins(t *testing.T, w *starwars.World) {
	ctx, b := t.Context(), w.Bed
	xwing := w.Pod("cluster1/x-wing")
	held := holdConn(t, xwing, w.Pod("cluster2/rebel-base-a"))
	if _, err := w.AddCluster(ctx, "cluster3", 3); err != nil {
		t.Fatal(err)
	}
	exchangeOn(t, held, w.Pod("cluster2/rebel-base-a"), "before-connect")
	if err := b.Connect(ctx, "cluster3", "cluster1", "cluster2"); err != nil {
		t.Fatal(err)
	}
	exchangeOn(t, held, w.Pod("cluster2/rebel-base-a"), "after-connect")
	// rebel-base has affinity none (scenario 2): every cluster serves.
	tally, err := w.WaitTally(ctx, xwing, w.RebelBase["cluster1"], 40, 60*time.Second, "rebel-base served by all three clusters",
		func(t starwars.Tally) bool { return t.Only("cluster1", "cluster2", "cluster3") })
	if err != nil {
		t.Fatal(err)
	}
	b.Logf("    x-wing -> rebel-base with cluster3 connected: %v", tally)
	reach(t, b, w.Pod("cluster3/x-wing"), w.Pod("cluster1/rebel-base-a"))
	reach(t, b, xwing, w.Pod("cluster3/rebel-base-b"))

	if err := b.Disconnect(ctx, "cluster3", "cluster1", "cluster2"); err != nil {
		t.Fatal(err)
	}
	exchangeOn(t, held, w.Pod("cluster2/rebel-base-a"), "after-disconnect")
	if _, err := w.WaitTally(ctx, xwing, w.RebelBase["cluster1"], 30, 60*time.Second, "rebel-base without cluster3",
		func(t starwars.Tally) bool { return t.Only("cluster1", "cluster2") }); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"cluster1", "cluster2"} {
		for _, n := range b.Cluster(c).Nodes {
			if err := b.WaitUntil(ctx, 30*time.Second, "no cluster3 entry in the ipcache of "+n.Name, func(ctx context.Context) (bool, string) {
				got, err := n.IPCachePrefixes(ctx)
				if err != nil {
					return false, err.Error()
				}
				var left []string
				for p, cl := range got {
					if cl == "cluster3" || strings.HasPrefix(p, "10.3.") {
						left = append(left, p)
					}
				}
				return len(left) == 0, fmt.Sprint(left)
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	refused(t, b, xwing, w.Pod("cluster3/rebel-base-b"))
}

// watchEntries samples a node's ipcache every 100 ms until stop is called
// and reports any sample where one of prefixes was missing.
func watchEntries(ctx context.Context, n *bed.Node, prefixes []string) (stop func() []string) {
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var missing []string
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			got, err := n.IPCachePrefixes(ctx)
			if err == nil {
				for _, p := range prefixes {
					if _, ok := got[p]; !ok {
						mu.Lock()
						missing = append(missing, time.Now().Format("15:04:05.000")+" "+p)
						mu.Unlock()
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	return func() []string { cancel(); wg.Wait(); return missing }
}

// Scenario 5a: kill -9 a remote clustermesh-apiserver (with its etcd)
// under traffic: established connections continue, new connections to
// known remote backends still work (last-known state); when it returns,
// agents reconnect and converge with no spurious delete.
func testAPIServerKilled(t *testing.T, w *starwars.World) {
	ctx, b := t.Context(), w.Bed
	xwing, target := w.Pod("cluster1/x-wing"), w.Pod("cluster2/rebel-base-a")
	held := holdConn(t, xwing, target)
	var remote []string
	for _, name := range []string{"rebel-base-a", "rebel-base-b", "x-wing", "tie-fighter"} {
		remote = append(remote, w.Pod("cluster2/"+name).IP.String()+"/32")
	}
	stop := watchEntries(ctx, xwing.Node, remote)
	if err := b.Cluster("cluster2").KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	exchangeOn(t, held, target, "apiserver-down")
	reach(t, b, xwing, w.Pod("cluster2/rebel-base-b"))
	if _, err := w.WaitTally(ctx, xwing, w.RebelBase["cluster1"], 30, 30*time.Second, "rebel-base still served by both clusters",
		func(t starwars.Tally) bool { return t.Only("cluster1", "cluster2") }); err != nil {
		t.Fatal(err)
	}
	if err := b.Cluster("cluster2").StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitStatus(ctx, "cluster1"); err != nil {
		t.Fatal(err)
	}
	exchangeOn(t, held, target, "apiserver-back")
	reach(t, b, xwing, w.Pod("cluster2/rebel-base-b"))
	if missing := stop(); len(missing) > 0 {
		t.Errorf("cluster2's pods left the ipcache of %s while its clustermesh-apiserver was down or restarting: %v", xwing.Node.Name, missing)
	}
}

// Scenario 5b: kill -9 an agent under traffic: established TCP survives
// and the restarted agent converges; connections on the node keep working
// while it is down.
func testAgentKilled(t *testing.T, w *starwars.World) {
	ctx, b := t.Context(), w.Bed
	xwing, target := w.Pod("cluster1/x-wing"), w.Pod("cluster2/rebel-base-a")
	held := holdConn(t, xwing, target)
	local := w.Pod("cluster1/rebel-base-b") // on x-wing's node
	n := xwing.Node
	if err := n.KillAgent(); err != nil {
		t.Fatal(err)
	}
	for range 5 { // the node's own pods keep talking with no agent
		if r := dial(t, xwing, local.Addr(), "agent-down"); r.Error != "" {
			t.Fatalf("%s -> %s (same node) with the agent down: %s", xwing, local, r.Error)
		}
	}
	if err := n.StartAgent(ctx); err != nil {
		t.Fatal(err)
	}
	exchangeOn(t, held, target, "agent-restarted")
	if err := b.WaitStatus(ctx, "cluster1"); err != nil {
		t.Fatal(err)
	}
	reach(t, b, xwing, w.Pod("cluster2/rebel-base-b"))
	reach(t, b, w.Pod("cluster2/x-wing"), local)
}
