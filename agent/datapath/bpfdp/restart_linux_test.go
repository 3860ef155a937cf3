package bpfdp_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/bpfdp"
	"github.com/clustermesh/clustermesh/agent/datapath/dptest"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

const (
	idA, idB = 1000, 2000
	epA, epB = 1, 2
)

// desiredState is what an agent wants of two pods A and B: A may send
// anything, B accepts TCP from A on 8080 and 9000-9010 only. Every table
// has values the kernel keeps only in part (cluster and service names,
// rules not one per entry), so that a restarted agent rewrites them.
type desiredState struct {
	ipcache     map[netip.Prefix]datapath.IPCacheEntry
	services    map[datapath.ServiceKey]datapath.Service
	policies    map[uint16]datapath.EndpointPolicy
	attachments map[int]datapath.Attachment
}

func newDesiredState(a, b *pod) desiredState {
	return desiredState{
		ipcache: map[netip.Prefix]datapath.IPCacheEntry{
			netip.PrefixFrom(a.ip, 32):           {Identity: idA, Cluster: "cluster-1"},
			netip.PrefixFrom(b.ip, 32):           {Identity: idB, Cluster: "cluster-1"},
			netip.MustParsePrefix("10.9.0.0/24"): {Identity: 3000, HostIP: netip.MustParseAddr("192.168.9.1"), Cluster: "cluster-2"},
		},
		services: map[datapath.ServiceKey]datapath.Service{
			{Addr: netip.MustParseAddr("10.96.0.10"), Port: 80, Protocol: "TCP"}: {Namespace: "ns", Name: "b",
				Backends: []datapath.Backend{{Addr: b.ip, Port: 8080, Cluster: "cluster-1"}}},
		},
		policies: map[uint16]datapath.EndpointPolicy{
			epA: {Identity: idA, EnforceEgress: true, Rules: []datapath.PolicyRule{{Identity: 0}}},
			epB: {Identity: idB, EnforceIngress: true, Rules: []datapath.PolicyRule{
				{Identity: idA, Ingress: true, Proto: 6, Port: 8080},
				{Identity: idA, Ingress: true, Proto: 6, Port: 9000, EndPort: 9010},
			}},
		},
		attachments: map[int]datapath.Attachment{
			a.ifindex: {IfName: a.ifname, EndpointID: epA},
			b.ifindex: {IfName: b.ifname, EndpointID: epB},
		},
	}
}

// An agent restart (a new Datapath over the same pins, then reconcilers
// whose first pass adopts the tables' List and rewrites every row the
// kernel keeps only in part) leaves an established TCP connection through
// two attached endpoints alone, drops no packet while it happens (new
// connections keep being made), and leaves the policy enforced: with TCX
// links and with clsact filters.
func TestRestartRewriteKeepsConnections(t *testing.T) {
	for _, mode := range []string{bpf.TCAttachTCX, bpf.TCAttachClsact} {
		t.Run(mode, func(t *testing.T) { testRestartRewrite(t, bpf.Options{TCAttach: mode}) })
	}
}

func testRestartRewrite(t *testing.T, opts bpf.Options) {
	opts.PinDir = newKernel(t)
	topo := newTopology(t, 2)
	a, b := topo.pods[0], topo.pods[1]
	want := newDesiredState(a, b)
	d := openWith(t, opts, topo.node)
	ctx := t.Context()
	must(t, writeAll(ctx, d.IPCache(), want.ipcache))
	must(t, writeAll(ctx, d.Services(), want.services))
	must(t, writeAll(ctx, d.Policies(), want.policies))
	must(t, writeAll(ctx, d.Attachments(), want.attachments))
	for _, port := range []uint16{8080, 8081, 9005} {
		tcpEchoServer(t, b, port)
	}
	conn, err := dial(a, netip.AddrPortFrom(b.ip, 8080), 5*time.Second)
	must(t, err)
	defer conn.Close()
	must(t, echo(conn, "before"))

	links := tcxLinks(t, opts, a, b)
	dropsBefore := policyDrops(t, d)
	traffic := startTraffic(a, netip.AddrPortFrom(b.ip, 8080))
	traffic.waitMore(t, 5) // some traffic before the restart

	d = dptest.Restart(t, d, func(t *testing.T) datapath.Datapath { return openWith(t, opts, topo.node) }).(*bpfdp.Datapath)
	ipcache := reconcileOnce(t, "ipcache", d.IPCache(), want.ipcache)
	services := reconcileOnce(t, "services", d.Services(), want.services)
	policies := reconcileOnce(t, "policies", d.Policies(), want.policies)
	reconcileOnce(t, "attachments", d.Attachments(), want.attachments)
	// Attaching attached interfaces again (what the reconciler does to
	// an attachment it lists in part) keeps them attached.
	must(t, writeAll(ctx, d.Attachments(), want.attachments))
	traffic.waitMore(t, 5) // some traffic after the rewrite
	n, err := traffic.stop()
	if err != nil {
		t.Fatalf("traffic through the restart: %v", err)
	}
	t.Logf("%d connections made through the restart", n)
	if got := tcxLinks(t, opts, a, b); !reflect.DeepEqual(got, links) {
		t.Fatalf("TCX links %v after the restart, want the same links as before: %v", got, links)
	}
	must(t, echo(conn, "after the restart"))
	if drops := policyDrops(t, d); drops != dropsBefore {
		t.Fatalf("%d packets dropped by policy during the restart", drops-dropsBefore)
	}

	// Every row the kernel keeps in part was rewritten, with equal kernel
	// content: List is what the kernel keeps of the desired values.
	for name, c := range map[string]struct{ updates, lossy int }{
		"ipcache":  {ipcache(), lossyRows(want.ipcache, bpfdp.KeptIPCache)},
		"services": {services(), lossyRows(want.services, bpfdp.KeptService)},
		"policies": {policies(), lossyRows(want.policies, bpfdp.KeptPolicy)},
	} {
		if c.updates != c.lossy || c.lossy == 0 {
			t.Errorf("%s: the reconciler wrote %d rows, want the %d (> 0) the kernel keeps in part", name, c.updates, c.lossy)
		}
	}
	checkHeld(t, d.IPCache(), dptest.KeptAll(want.ipcache, bpfdp.KeptIPCache))
	checkHeld(t, d.Services(), dptest.KeptAll(want.services, bpfdp.KeptService))
	checkHeld(t, d.Policies(), dptest.KeptAll(want.policies, bpfdp.KeptPolicy))
	checkHeld(t, d.Attachments(), want.attachments)

	// The policy is still enforced, by the new process's programs.
	for port, allowed := range map[uint16]bool{8080: true, 9005: true, 8081: false} {
		before := policyDrops(t, d)
		c, err := dial(a, netip.AddrPortFrom(b.ip, port), map[bool]time.Duration{true: 5 * time.Second, false: 400 * time.Millisecond}[allowed])
		if allowed {
			must(t, err)
			must(t, echo(c, "new"))
			c.Close()
			continue
		}
		if err == nil {
			c.Close()
			t.Fatalf("B:%d after the restart: connected, want dropped", port)
		}
		testutil.Eventually(t, 5*time.Second, fmt.Sprintf("B:%d dropped by policy", port), func() bool { return policyDrops(t, d) > before })
	}
	must(t, echo(conn, "at the end"))
}

func writeAll[K comparable, V any](ctx context.Context, tbl datapath.Table[K, V], rows map[K]V) error {
	for k, v := range rows {
		if err := tbl.Update(ctx, k, v); err != nil {
			return err
		}
	}
	return nil
}

func lossyRows[K comparable, V any](rows map[K]V, kept func(V) V) int {
	n := 0
	for _, v := range rows {
		if !reflect.DeepEqual(kept(v), v) {
			n++
		}
	}
	return n
}

func checkHeld[K comparable, V any](t *testing.T, tbl datapath.Table[K, V], want map[K]V) {
	t.Helper()
	if diff := cmp.Diff(want, dptest.Held(t, tbl), dptest.CmpOptions()); diff != "" {
		t.Errorf("held after the restart (-want +got):\n%s", diff)
	}
}

// reconcileOnce runs a reconciler of tbl towards rows (sources initialized)
// until it converged, as a restarted agent's, and returns a function that
// counts the updates it made.
func reconcileOnce[K comparable, V any](t *testing.T, name string, tbl datapath.Table[K, V], rows map[K]V) func() int {
	t.Helper()
	ct := &countUpdates[K, V]{Table: tbl}
	src := dptest.NewSource[K, V]()
	src.Set(func(m map[K]V) {
		for k, v := range rows {
			m[k] = v
		}
	}, true)
	r := dptest.Start(t, datapath.Table[K, V](ct), src)
	dptest.Eventually(t, name+" reconciled", func() bool {
		st := r.Status()
		return st.Passes > 0 && st.Pruned && st.Failing == 0 && st.Applied == len(rows) && st.Desired == len(rows)
	})
	if st := r.Status(); st.LastError != "" {
		t.Fatalf("%s: %+v", name, st)
	}
	return ct.count
}

type countUpdates[K comparable, V any] struct {
	datapath.Table[K, V]
	mu sync.Mutex // guards n
	n  int
}

func (c *countUpdates[K, V]) Update(ctx context.Context, k K, v V) error {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.Table.Update(ctx, k, v)
}

func (c *countUpdates[K, V]) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// policyDrops counts the packets the datapath dropped by policy.
func policyDrops(t *testing.T, d *bpfdp.Datapath) uint64 {
	t.Helper()
	m, err := d.BPF().Metrics()
	must(t, err)
	var n uint64
	for k, c := range m {
		if k.Reason == bpf.ReasonPolicyDenied || k.Reason == bpf.ReasonPolicyDenyRule {
			n += c.Packets
		}
	}
	return n
}

// tcxLinks returns the IDs of the TCX links pinned for the pods' host
// interfaces (none with clsact).
func tcxLinks(t *testing.T, opts bpf.Options, pods ...*pod) map[string]link.ID {
	t.Helper()
	out := map[string]link.ID{}
	if opts.TCAttach == bpf.TCAttachClsact {
		return out
	}
	for _, p := range pods {
		for _, dir := range []string{"ingress", "egress"} {
			name := fmt.Sprintf("tcx_%d_%s", p.ifindex, dir) // bpf/README.md
			l, err := link.LoadPinnedLink(filepath.Join(opts.PinDir, "links", name), nil)
			must(t, err)
			info, err := l.Info()
			must(t, err)
			out[name] = info.ID
			must(t, l.Close())
		}
	}
	return out
}

// traffic makes new connections from a pod to dst, one after the other,
// and exchanges a message on each, until stopped.
type traffic struct {
	stopc chan struct{}
	done  chan result
	made  atomic.Int64 // connections attempted so far
}

// waitMore waits until n more connections than now were attempted.
func (tr *traffic) waitMore(t *testing.T, n int64) {
	t.Helper()
	target := tr.made.Load() + n
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%d more connections through the datapath", n), func() bool {
		return tr.made.Load() >= target
	})
}

type result struct {
	n   int
	err error
}

func startTraffic(from *pod, dst netip.AddrPort) *traffic {
	tr := &traffic{stopc: make(chan struct{}), done: make(chan result, 1)}
	go func() {
		var errs []error
		for n := 0; ; n++ {
			select {
			case <-tr.stopc:
				tr.done <- result{n, errors.Join(errs...)}
				return
			default:
			}
			c, err := dial(from, dst, 2*time.Second)
			if err == nil {
				err = echo(c, fmt.Sprintf("connection %d", n))
				c.Close()
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("connection %d: %w", n, err))
			}
			tr.made.Add(1)
			time.Sleep(2 * time.Millisecond) // paces the traffic
		}
	}()
	return tr
}

// stop stops the traffic and returns how many connections were made, and
// the errors of those that failed.
func (tr *traffic) stop() (int, error) {
	close(tr.stopc)
	r := <-tr.done
	return r.n, r.err
}
