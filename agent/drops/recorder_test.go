package drops

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/clustermesh/clustermesh/bpf"
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
func runRecorder(t *testing.T, r *Recorder, src *fakeSource) []Record {
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
	got, _ := r.List(Query{})
	return got
}

// equateAddrs compares netip values with ==.
var equateAddrs = cmpopts.EquateComparable(netip.AddrPort{})

var (
	client = netip.MustParseAddrPort("10.1.0.5:41000")
	server = netip.MustParseAddrPort("10.2.0.7:8080")
)

// Run keeps drops only, in order, with both identities, their clusters
// and the reason; a record that does not decode is skipped.
func TestRecorderKeepsDrops(t *testing.T) {
	denied := bpf.Event{
		Time: t0, Verdict: bpf.Dropped, Reason: bpf.ReasonPolicyDenied, Ingress: true, EndpointID: 12,
		SrcIdentity: 65537, DstIdentity: 131073, Src: client, Dst: server, Proto: bpf.ProtoTCP, Ifindex: 4, Length: 60,
	}
	allowed := denied
	allowed.Verdict, allowed.Reason = bpf.Allowed, bpf.ReasonPolicyAllow
	egress := denied
	egress.Ingress, egress.Reason, egress.Proto, egress.Time = false, bpf.ReasonPolicyDenyRule, bpf.ProtoUDP, t0.Add(1)
	unknown := denied
	unknown.Reason, unknown.Time, unknown.SrcIdentity = bpf.Reason(30), t0.Add(2), 2

	clusters := map[uint32]string{65537: "cluster1", 131073: "cluster2"}
	r := NewRecorder(Config{Capacity: 8, ClusterOf: func(id uint32) string { return clusters[id] }})
	got := runRecorder(t, r, newFakeSource(
		step{ev: allowed},
		step{ev: denied},
		step{err: fmt.Errorf("event of 3 bytes, want 48: %w", bpf.ErrInvalidEvent)},
		step{ev: egress},
		step{ev: allowed},
		step{ev: unknown},
	))
	want := []Record{
		{Time: t0, Direction: "ingress", Reason: "policy-denied", Src: client, Dst: server, Protocol: 6,
			SrcIdentity: 65537, DstIdentity: 131073, SrcCluster: "cluster1", DstCluster: "cluster2", EndpointID: 12},
		{Time: t0.Add(1), Direction: "egress", Reason: "policy-deny-rule", Src: client, Dst: server, Protocol: 17,
			SrcIdentity: 65537, DstIdentity: 131073, SrcCluster: "cluster1", DstCluster: "cluster2", EndpointID: 12},
		{Time: t0.Add(2), Direction: "ingress", Reason: "reason(30)", Src: client, Dst: server, Protocol: 6,
			SrcIdentity: 2, DstIdentity: 131073, DstCluster: "cluster2", EndpointID: 12},
	}
	if d := cmp.Diff(want, got, equateAddrs); d != "" {
		t.Errorf("records (-want +got):\n%s", d)
	}
}

// Without ClusterOf the clusters stay empty.
func TestRecorderWithoutClusters(t *testing.T) {
	r := NewRecorder(Config{})
	got := runRecorder(t, r, newFakeSource(step{ev: bpf.Event{Verdict: bpf.Dropped, Reason: bpf.ReasonPolicyDenied, SrcIdentity: 7}}))
	want := []Record{{Direction: "egress", Reason: "policy-denied", SrcIdentity: 7}}
	if d := cmp.Diff(want, got, equateAddrs); d != "" {
		t.Errorf("records (-want +got):\n%s", d)
	}
}

// Any other read error (the reader closed under Run) stops Run with it.
func TestRecorderReadError(t *testing.T) {
	r := NewRecorder(Config{})
	src := newFakeSource(step{ev: bpf.Event{Verdict: bpf.Dropped}}, step{err: os.ErrClosed})
	err := r.Run(t.Context(), src)
	if !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Run: %v, want os.ErrClosed wrapped", err)
	}
	if got, _ := r.List(Query{}); len(got) != 1 {
		t.Fatalf("records before the error: %+v, want 1", got)
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
