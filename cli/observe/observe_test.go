package observe

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/flowapi"
	"github.com/clustermesh/clustermesh/agent/flows"
	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

// agent is the local API of an agent on a unix socket, serving the flows
// of its recorder.
type agent struct {
	socket string
	rec    *flows.Recorder
	lost   atomic.Uint64 // the datapath's lost events
}

func startAgent(t *testing.T, node string, fs ...flowapi.Flow) *agent {
	t.Helper()
	dir, err := os.MkdirTemp("", "cm-observe") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	a := &agent{socket: filepath.Join(dir, "agent.sock")}
	a.rec = flows.NewRecorder(flows.Config{Node: node, Capacity: 16, DatapathLost: func() (uint64, error) { return a.lost.Load(), nil }})
	a.add(fs...)
	mux := http.NewServeMux()
	localapi.New(localapi.Config{Flows: a.rec}).Register(mux)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- localapi.Serve(ctx, a.socket, mux) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve %s: %v", node, err)
		}
	})
	testutil.Eventually(t, 5*time.Second, "the API socket of "+node, func() bool {
		_, err := os.Stat(a.socket)
		return err == nil
	})
	return a
}

func (a *agent) add(fs ...flowapi.Flow) {
	for i := range fs {
		a.rec.Ring().Add(&fs[i])
	}
}

// flowAt is a flow of node at t, told apart by its source port.
func flowAt(node string, t time.Time, port uint16, verdict string) flowapi.Flow {
	src := xwing
	src.Port = port
	return flowapi.Flow{Time: t, Node: node, Direction: "egress", Verdict: verdict, Reason: "policy-denied", Protocol: flowapi.ProtoTCP, Src: src, Dst: rebel}
}

// syncBuffer is a buffer written by Run and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ports returns the source ports of the compact lines of out, in order.
func ports(out string) []string {
	got := []string{}
	for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if _, after, ok := strings.Cut(l, "x-wing:"); ok {
			got = append(got, strings.Fields(after)[0])
		}
	}
	return got
}

func runQuery(t *testing.T, src Source, req flowapi.Request) (string, string, error) {
	t.Helper()
	var out, warn bytes.Buffer
	p, _ := NewPrinter(OutputCompact, &out, time.UTC)
	err := Run(t.Context(), src, Options{Request: req, Printer: p, Warn: &warn})
	return out.String(), warn.String(), err
}

// The flows of every agent, merged in time order; --last is over the
// cluster; filters run on the agents; an agent that cannot be read is said.
func TestRunQuery(t *testing.T) {
	n1 := startAgent(t, "n1", flowAt("n1", t0.Add(1*time.Second), 1, "dropped"), flowAt("n1", t0.Add(3*time.Second), 3, "forwarded"),
		flowAt("n1", t0.Add(5*time.Second), 5, "dropped"))
	n2 := startAgent(t, "n2", flowAt("n2", t0.Add(2*time.Second), 2, "dropped"), flowAt("n2", t0.Add(4*time.Second), 4, "dropped"))
	src := SocketSource{"n1": n1.socket, "n2": n2.socket}
	for _, tc := range []struct {
		name string
		req  flowapi.Request
		want []string
	}{
		{"all", flowapi.Request{}, []string{"1", "2", "3", "4", "5"}},
		{"last of the cluster", flowapi.Request{Last: 3}, []string{"3", "4", "5"}},
		{"since", flowapi.Request{Since: t0.Add(2 * time.Second)}, []string{"3", "4", "5"}},
		{"filtered on the agents", flowapi.Request{Last: 3, Filter: flowapi.Filter{Verdict: []string{"dropped"}}}, []string{"2", "4", "5"}},
		{"by port", flowapi.Request{Filter: flowapi.Filter{Port: []uint16{2, 5}}}, []string{"2", "5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, warn, err := runQuery(t, src, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, ports(out)); d != "" {
				t.Errorf("flows (-want +got):\n%s\n%s", d, out)
			}
			if warn != "" {
				t.Errorf("warnings: %s", warn)
			}
		})
	}

	// One agent down: the other's flows, and the failure said.
	out, warn, err := runQuery(t, SocketSource{"n1": n1.socket, "n3": "/nonexistent/agent.sock"}, flowapi.Request{})
	if err != nil || len(ports(out)) != 3 || !strings.Contains(warn, "# n3: agent API at /nonexistent/agent.sock:") {
		t.Errorf("one agent down: err %v, out %q, warn %q", err, out, warn)
	}
	if _, _, err := runQuery(t, SocketSource{"n3": "/nonexistent/agent.sock"}, flowapi.Request{}); !errors.Is(err, ErrNoAgent) {
		t.Errorf("no agent: %v, want ErrNoAgent", err)
	}
	// An agent refusing the request: its error.
	_, warn, _ = runQuery(t, src, flowapi.Request{Filter: flowapi.Filter{Port: []uint16{0}}})
	if !strings.Contains(warn, `# n1: agent API at`) || !strings.Contains(warn, `port=\"0\"`) && !strings.Contains(warn, `port="0"`) {
		t.Errorf("a refused request: %q", warn)
	}
}

// --follow: the held flows of both agents merged and cut to --last, then
// new flows of both in time order, the events an agent lost said, until
// ctx ends.
func TestRunFollow(t *testing.T) {
	n1 := startAgent(t, "n1", flowAt("n1", t0.Add(1*time.Second), 1, "dropped"), flowAt("n1", t0.Add(3*time.Second), 3, "dropped"))
	n2 := startAgent(t, "n2", flowAt("n2", t0.Add(2*time.Second), 2, "dropped"))
	var out, warn syncBuffer
	p, _ := NewPrinter(OutputCompact, &out, time.UTC)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, SocketSource{"n1": n1.socket, "n2": n2.socket}, Options{Request: flowapi.Request{Follow: true, Last: 2},
			Printer: p, Warn: &warn, Window: time.Second})
	}()
	testutil.Eventually(t, 10*time.Second, "the last 2 held flows of the cluster", func() bool { return cmp.Equal(ports(out.String()), []string{"2", "3"}) })

	// n2 reports an older flow after n1 a newer one: within the window,
	// they come out in time order.
	now := time.Now()
	n1.add(flowAt("n1", now.Add(20*time.Millisecond), 11, "dropped"))
	n2.add(flowAt("n2", now, 10, "dropped"))
	testutil.Eventually(t, 10*time.Second, "the new flows, in time order", func() bool {
		return cmp.Equal(ports(out.String()), []string{"2", "3", "10", "11"})
	})
	n2.lost.Store(42)
	testutil.Eventually(t, 10*time.Second, "the lost events said", func() bool {
		return strings.Contains(warn.String(), "# n2: 42 events lost in the datapath")
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
