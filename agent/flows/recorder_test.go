package flows

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/flowapi"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// step is what one Read of a fakeSource returns.
type step struct {
	ev  bpf.Event
	err error
}

// fakeSource returns its steps in order, then closes drained and blocks
// until ctx ends.
type fakeSource struct {
	steps   []step
	drained chan struct{}
}

func newFakeSource(steps ...step) *fakeSource {
	return &fakeSource{steps: steps, drained: make(chan struct{})}
}

func (s *fakeSource) Read(ctx context.Context) (bpf.Event, error) {
	if len(s.steps) > 0 {
		st := s.steps[0]
		s.steps = s.steps[1:]
		return st.ev, st.err
	}
	select {
	case <-s.drained:
	default:
		close(s.drained)
	}
	<-ctx.Done()
	return bpf.Event{}, ctx.Err()
}

// runRecorder runs r on src until src is drained and returns what it
// recorded; it stops Run and checks that it returned ctx's error.
func runRecorder(t *testing.T, r *Recorder, src *fakeSource) []flowapi.Flow {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, src) }()
	select {
	case <-src.drained:
	case err := <-done:
		cancel()
		t.Fatalf("Run returned before the source was drained: %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v, want context.Canceled", err)
	}
	got, _ := r.Ring().Last(0, time.Time{}, nil)
	return got
}

// The mesh the tests resolve against: x-wing (cluster1, this node's pod),
// rebel-base (cluster2), tie-fighter (cluster1, attached by the CNI plugin
// but not yet in the ipcache), node n2 of cluster2, a policy's CIDR.
var (
	xwingIP     = netip.MustParseAddr("10.1.0.5")
	rebelIP     = netip.MustParseAddr("10.2.0.7")
	tieIP       = netip.MustParseAddr("10.1.0.9")
	n2IP        = netip.MustParseAddr("192.168.2.1")
	externalIP  = netip.MustParseAddr("203.0.113.9")
	worldIP     = netip.MustParseAddr("1.1.1.1")
	cidr        = netip.MustParsePrefix("203.0.113.0/24")
	xwingID     = uint32(1<<16 + 10)
	rebelID     = uint32(2<<16 + 20)
	cidrID      = uint32(1<<16 + 99)
	xwingLabels = []string{"k8s:app=x-wing", "k8s:io.cilium.k8s.policy.cluster=cluster1", "k8s:io.kubernetes.pod.namespace=default"}
	rebelLabels = []string{"k8s:app=rebel-base", "k8s:io.cilium.k8s.policy.cluster=cluster2", "k8s:io.kubernetes.pod.namespace=default"}
	equateFlows = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})
)

func newMesh(t testing.TB) *state.State {
	t.Helper()
	st, err := state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	labels := func(ss []string) identity.Labels {
		ls, err := identity.ParseLabels(ss...)
		if err != nil {
			t.Fatal(err)
		}
		return ls
	}
	if err := st.Update(func(w *state.WriteTxn) error {
		return errors.Join(
			w.UpsertIdentity("cluster1", identity.NumericIdentity(xwingID), labels(xwingLabels)),
			w.UpsertIdentity("cluster2", identity.NumericIdentity(rebelID), labels(rebelLabels)),
			w.UpsertIP(state.IPCacheRow{Prefix: netip.PrefixFrom(xwingIP, 32), Cluster: "cluster1", ID: identity.NumericIdentity(xwingID), Namespace: "default", Pod: "x-wing"}),
			w.UpsertIP(state.IPCacheRow{Prefix: netip.PrefixFrom(rebelIP, 32), Cluster: "cluster2", ID: identity.NumericIdentity(rebelID),
				HostIP: n2IP, Namespace: "default", Pod: "rebel-base"}),
			w.UpsertAttachment(state.AttachmentRow{Key: datapath.AttachmentKey("c-tie", "eth0"), ContainerID: "c-tie", IfName: "eth0",
				HostIfName: "lxctie", HostIfIndex: 7, IPs: []netip.Addr{tieIP}, Namespace: "empire", Pod: "tie-fighter"}),
			w.UpsertNode("cluster2", schema.Node{Name: "n2", Cluster: "cluster2", IPAddresses: []schema.NodeAddress{{Type: "InternalIP", IP: net.IP(n2IP.AsSlice())}}}),
			w.UpsertCIDRIdentity(cidr, identity.NumericIdentity(cidrID)),
		)
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// Every event becomes a flow, both ends resolved from the state; a record
// that does not decode is skipped and counted.
func TestRecorderResolves(t *testing.T) {
	st := newMesh(t)
	syn := bpf.Event{
		Time: t0, Verdict: bpf.Dropped, Reason: bpf.ReasonPolicyDenied, Ingress: true, EndpointID: 12,
		SrcIdentity: rebelID, DstIdentity: xwingID, Src: ap(rebelIP, 43210), Dst: ap(xwingIP, 80),
		Proto: bpf.ProtoTCP, TCPFlags: bpf.TCPFlagSYN, Length: 60,
	}
	synAck := bpf.Event{
		Time: t0.Add(1), Verdict: bpf.Allowed, Reason: bpf.ReasonCTReply, Reply: true, EndpointID: 12,
		SrcIdentity: xwingID, DstIdentity: rebelID, Src: ap(xwingIP, 80), Dst: ap(rebelIP, 43210),
		Proto: bpf.ProtoTCP, TCPFlags: bpf.TCPFlagSYN | bpf.TCPFlagACK, Length: 60,
	}
	toNode := bpf.Event{Time: t0.Add(2), Verdict: bpf.Allowed, Reason: bpf.ReasonPolicyAllow, EndpointID: 13,
		SrcIdentity: 5, DstIdentity: uint32(identity.ReservedRemoteNode), Src: ap(tieIP, 5353), Dst: ap(n2IP, 53), Proto: bpf.ProtoUDP}
	toCIDR := bpf.Event{Time: t0.Add(3), Verdict: bpf.Allowed, Reason: bpf.ReasonPolicyAllow, EndpointID: 12,
		SrcIdentity: xwingID, DstIdentity: cidrID, Src: ap(xwingIP, 0), Dst: ap(externalIP, 0), Proto: 1}
	toWorld := bpf.Event{Time: t0.Add(4), Verdict: bpf.Dropped, Reason: bpf.ReasonPolicyDenyRule, EndpointID: 12,
		SrcIdentity: xwingID, DstIdentity: 2, Src: ap(xwingIP, 40000), Dst: ap(worldIP, 443), Proto: bpf.ProtoTCP, TCPFlags: bpf.TCPFlagSYN}
	unknown := bpf.Event{Time: t0.Add(5), Verdict: bpf.Dropped, Reason: bpf.Reason(30), EndpointID: 12,
		SrcIdentity: 77777, DstIdentity: xwingID, Src: ap(netip.MustParseAddr("10.9.9.9"), 1), Dst: ap(xwingIP, 2), Proto: bpf.ProtoUDP}

	r := NewRecorder(Config{Node: "n1", Capacity: 16, Resolver: NewStateResolver(st, "cluster1")})
	got := runRecorder(t, r, newFakeSource(
		step{ev: syn}, step{ev: synAck},
		step{err: fmt.Errorf("event of 3 bytes, want 72: %w", bpf.ErrInvalidEvent)},
		step{ev: toNode}, step{ev: toCIDR}, step{ev: toWorld}, step{ev: unknown},
	))
	xwing := func(port uint16) flowapi.Endpoint {
		return flowapi.Endpoint{IP: xwingIP, Port: port, Identity: xwingID, Cluster: "cluster1", Namespace: "default", Pod: "x-wing", Labels: xwingLabels}
	}
	rebel := func(port uint16) flowapi.Endpoint {
		return flowapi.Endpoint{IP: rebelIP, Port: port, Identity: rebelID, Cluster: "cluster2", Namespace: "default", Pod: "rebel-base", Labels: rebelLabels}
	}
	want := []flowapi.Flow{
		{Time: t0, Node: "n1", Direction: "ingress", Verdict: "dropped", Reason: "policy-denied", Protocol: flowapi.ProtoTCP,
			TCPFlags: flowapi.SYN, EndpointID: 12, Bytes: 60, Src: rebel(43210), Dst: xwing(80)},
		{Time: t0.Add(1), Node: "n1", Direction: "egress", Verdict: "forwarded", Reason: "ct-reply", Protocol: flowapi.ProtoTCP,
			TCPFlags: flowapi.SYN | flowapi.ACK, IsReply: true, EndpointID: 12, Bytes: 60, Src: xwing(80), Dst: rebel(43210)},
		{Time: t0.Add(2), Node: "n1", Direction: "egress", Verdict: "forwarded", Reason: "policy-allow", Protocol: flowapi.ProtoUDP, EndpointID: 13,
			Src: flowapi.Endpoint{IP: tieIP, Port: 5353, Identity: 5, Cluster: "cluster1", Namespace: "empire", Pod: "tie-fighter", Reserved: "init", Labels: []string{"reserved:init"}},
			Dst: flowapi.Endpoint{IP: n2IP, Port: 53, Identity: 6, Cluster: "cluster2", Node: "n2", Reserved: "remote-node", Labels: []string{"reserved:remote-node"}}},
		{Time: t0.Add(3), Node: "n1", Direction: "egress", Verdict: "forwarded", Reason: "policy-allow", Protocol: flowapi.ProtoICMP, EndpointID: 12,
			Src: xwing(0), Dst: flowapi.Endpoint{IP: externalIP, Identity: cidrID, Cluster: "cluster1", CIDR: "203.0.113.0/24", Labels: []string{"cidr:203.0.113.0/24"}}},
		{Time: t0.Add(4), Node: "n1", Direction: "egress", Verdict: "dropped", Reason: "policy-deny-rule", Protocol: flowapi.ProtoTCP,
			TCPFlags: flowapi.SYN, EndpointID: 12, Src: xwing(40000), Dst: flowapi.Endpoint{IP: worldIP, Port: 443, Identity: 2, Reserved: "world", Labels: []string{"reserved:world"}}},
		{Time: t0.Add(5), Node: "n1", Direction: "egress", Verdict: "dropped", Reason: "reason(30)", Protocol: flowapi.ProtoUDP, EndpointID: 12,
			Src: flowapi.Endpoint{IP: netip.MustParseAddr("10.9.9.9"), Port: 1, Identity: 77777}, Dst: xwing(2)},
	}
	if d := cmp.Diff(want, got, equateFlows); d != "" {
		t.Errorf("flows (-want +got):\n%s", d)
	}
	if st := r.Status(); st.Lost.Undecodable != 1 || st.Seen != 6 || st.Held != 6 || st.Capacity != 16 || st.Node != "n1" {
		t.Errorf("status %+v, want 6 seen and held of 16, 1 undecodable", st)
	}
}

// A resolved end follows the state: a pod deleted after its flow keeps its
// name in that flow, a new one is named in the next.
func TestResolverFollowsTheState(t *testing.T) {
	st := newMesh(t)
	res := NewStateResolver(st, "cluster1")
	if e := res.Resolve(rebelIP, rebelID); e.Pod != "rebel-base" {
		t.Fatalf("before: %+v", e)
	}
	moved := netip.MustParseAddr("10.2.0.8")
	if err := st.Update(func(w *state.WriteTxn) error {
		return errors.Join(w.DeleteIP("cluster2", netip.PrefixFrom(rebelIP, 32)),
			w.UpsertIP(state.IPCacheRow{Prefix: netip.PrefixFrom(moved, 32), Cluster: "cluster2", ID: identity.NumericIdentity(rebelID), Namespace: "default", Pod: "rebel-base-2"}))
	}); err != nil {
		t.Fatal(err)
	}
	if e := res.Resolve(rebelIP, rebelID); e.Pod != "" || e.Cluster != "cluster2" {
		t.Errorf("the deleted pod's address: %+v, want no pod, the identity's cluster", e)
	}
	if e := res.Resolve(moved, rebelID); e.Pod != "rebel-base-2" {
		t.Errorf("the new pod: %+v", e)
	}
}

// The cache of resolved ends stays bounded under a flood of sources.
func TestResolverCacheBounded(t *testing.T) {
	res := NewStateResolver(newMesh(t), "cluster1")
	for i := range 3 * maxCached {
		res.Resolve(netip.AddrFrom4([4]byte{10, 50, byte(i >> 8), byte(i)}), 2)
	}
	if len(res.ends) > maxCached {
		t.Errorf("%d ends cached, want at most %d", len(res.ends), maxCached)
	}
}

// Any other read error (the reader closed under Run) stops Run with it.
func TestRecorderReadError(t *testing.T) {
	r := NewRecorder(Config{})
	src := newFakeSource(step{ev: bpf.Event{Verdict: bpf.Dropped}}, step{err: os.ErrClosed})
	if err := r.Run(t.Context(), src); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Run: %v, want os.ErrClosed wrapped", err)
	}
	if got, _ := r.Ring().Last(0, time.Time{}, nil); len(got) != 1 {
		t.Fatalf("flows before the error: %+v, want 1", got)
	}
}

// A Run whose ctx already ended returns at once.
func TestRecorderCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := NewRecorder(Config{}).Run(ctx, newFakeSource()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
}

// The metrics count flows by verdict, reason, direction and peer cluster,
// drops by reason, the ring and every kind of loss; their names pass
// promlint.
func TestMetrics(t *testing.T) {
	st := newMesh(t)
	lost := uint64(7)
	r := NewRecorder(Config{Node: "n1", Capacity: 2, Resolver: NewStateResolver(st, "cluster1"),
		DatapathLost: func() (uint64, error) { return lost, nil }})
	in := bpf.Event{Verdict: bpf.Dropped, Reason: bpf.ReasonPolicyDenied, Ingress: true, SrcIdentity: rebelID, DstIdentity: xwingID,
		Src: ap(rebelIP, 1), Dst: ap(xwingIP, 80), Proto: bpf.ProtoTCP}
	out := bpf.Event{Verdict: bpf.Allowed, Reason: bpf.ReasonPolicyAllow, SrcIdentity: xwingID, DstIdentity: 2,
		Src: ap(xwingIP, 1), Dst: ap(worldIP, 80), Proto: bpf.ProtoTCP}
	runRecorder(t, r, newFakeSource(step{ev: in}, step{ev: in}, step{ev: out},
		step{err: fmt.Errorf("short: %w", bpf.ErrInvalidEvent)}))

	reg := prometheus.NewRegistry()
	reg.MustRegister(r.Collectors()...)
	want := `
# HELP clustermesh_agent_drops_total Packets the datapath dropped and reported, by reason.
# TYPE clustermesh_agent_drops_total counter
clustermesh_agent_drops_total{reason="policy-denied"} 2
# HELP clustermesh_agent_flow_events_lost_total Datapath events that did not become a visible flow, by where they were lost: datapath (its ring buffer was full), undecodable, overwritten (pushed out of the ring by newer flows).
# TYPE clustermesh_agent_flow_events_lost_total counter
clustermesh_agent_flow_events_lost_total{source="datapath"} 7
clustermesh_agent_flow_events_lost_total{source="overwritten"} 1
clustermesh_agent_flow_events_lost_total{source="undecodable"} 1
# HELP clustermesh_agent_flow_ring_added_total Flows added to the ring of recent flows.
# TYPE clustermesh_agent_flow_ring_added_total counter
clustermesh_agent_flow_ring_added_total 3
# HELP clustermesh_agent_flow_ring_capacity Flows the ring of recent flows can hold (--flows-capacity).
# TYPE clustermesh_agent_flow_ring_capacity gauge
clustermesh_agent_flow_ring_capacity 2
# HELP clustermesh_agent_flow_ring_flows Flows the ring of recent flows holds.
# TYPE clustermesh_agent_flow_ring_flows gauge
clustermesh_agent_flow_ring_flows 2
# HELP clustermesh_agent_flows_total Flows recorded (forwarded ones as sampled by --flows-allowed-sample), by verdict, reason, direction and the peer's cluster.
# TYPE clustermesh_agent_flows_total counter
clustermesh_agent_flows_total{direction="egress",peer_cluster="none",reason="policy-allow",verdict="forwarded"} 1
clustermesh_agent_flows_total{direction="ingress",peer_cluster="cluster2",reason="policy-denied",verdict="dropped"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// Recording a flow (convert, resolve from the cache, count, add) does not
// allocate once the ends are cached.
func TestRecordAllocs(t *testing.T) {
	r := NewRecorder(Config{Node: "n1", Resolver: NewStateResolver(newMesh(t), "cluster1")})
	ev := bpf.Event{Verdict: bpf.Dropped, Reason: bpf.ReasonPolicyDenied, Ingress: true, SrcIdentity: rebelID, DstIdentity: xwingID,
		Src: ap(rebelIP, 1), Dst: ap(xwingIP, 80), Proto: bpf.ProtoTCP}
	var f flowapi.Flow
	record := func() {
		r.flow(&ev, &f)
		r.metrics.count(&f)
		r.ring.Add(&f)
	}
	record()
	if n := testing.AllocsPerRun(100, record); n != 0 {
		t.Errorf("recording a flow allocates %v times, want 0", n)
	}
}

// BenchmarkRecord is the agent's cost per datapath event, state cached.
func BenchmarkRecord(b *testing.B) {
	r := NewRecorder(Config{Node: "n1", Resolver: NewStateResolver(newMesh(b), "cluster1")})
	ev := bpf.Event{Verdict: bpf.Dropped, Reason: bpf.ReasonPolicyDenied, Ingress: true, SrcIdentity: rebelID, DstIdentity: xwingID,
		Src: ap(rebelIP, 1), Dst: ap(xwingIP, 80), Proto: bpf.ProtoTCP}
	var f flowapi.Flow
	b.ReportAllocs()
	for b.Loop() {
		r.flow(&ev, &f)
		r.metrics.count(&f)
		r.ring.Add(&f)
	}
}
