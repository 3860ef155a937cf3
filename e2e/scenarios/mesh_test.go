//go:build linux

package scenarios

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/e2e/bed"
	"github.com/clustermesh/clustermesh/e2e/starwars"
	"github.com/clustermesh/clustermesh/e2e/workload"
)

// TestMesh runs the scenarios in order on one bed (two clusters of two
// nodes, a third joining later): starting the bed is most of the cost.
func TestMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts whole clusters (kube-apiservers, controller managers, clustermesh-apiservers, agents, pods)")
	}
	log := &testLog{t: t}
	b := startBed(t, log)
	w, err := starwars.New(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		f    func(*testing.T, *starwars.World)
	}{
		{"PodToPodEncrypted", testPodToPodEncrypted},
		{"GlobalService", testGlobalService},
		{"CrossClusterPolicy", testCrossClusterPolicy},
		{"Observe", testObserve},
		{"PolicyTrace", testPolicyTrace},
		{"ObserveService", testObserveService},
		{"PartitionHeals", testPartitionHeals},
		{"ThirdClusterJoins", testThirdClusterJoins},
		{"APIServerKilled", testAPIServerKilled},
		{"AgentKilled", testAgentKilled},
	}
	for _, s := range steps {
		ok := t.Run(s.name, func(t *testing.T) { log.t = t; s.f(t, w) })
		log.t = t // a finished subtest must not be logged to
		if !ok {
			return // later steps build on the state of earlier ones
		}
	}
}

// testLog sends the bed's progress to the running (sub)test's log.
type testLog struct{ t *testing.T }

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func dial(t *testing.T, from *bed.Pod, addr, msg string) workload.DialResult {
	t.Helper()
	r, err := from.Dial(t.Context(), workload.DialRequest{Addr: addr, Message: msg, TimeoutMS: 1000})
	if err != nil {
		t.Fatalf("%s: %v", from, err)
	}
	return r
}

// reach asserts that a TCP connection from one pod to another succeeds and
// is answered by it, retrying for a while (state may still be spreading).
func reach(t *testing.T, b *bed.Bed, from, to *bed.Pod) {
	t.Helper()
	reachAt(t, b, from, to, to.Addr())
}

// reachAt is reach to one of the pod's addresses (ip:port).
func reachAt(t *testing.T, b *bed.Bed, from, to *bed.Pod, addr string) {
	t.Helper()
	if err := b.WaitUntil(t.Context(), 30*time.Second, from.String()+" -> "+to.String()+" at "+addr, func(context.Context) (bool, string) {
		r := dial(t, from, addr, "ping")
		return r.Error == "" && strings.HasPrefix(r.Reply, to.String()+" "), r.Reply + r.Error
	}); err != nil {
		t.Fatal(err)
	}
}
