package flows

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/flowapi"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/services"
)

// The ClusterIP of default/rebel-base in the local cluster (cluster1),
// whose backend rebel-base runs in cluster2.
var rebelFrontend = netip.MustParseAddrPort("10.96.0.10:80")

// newMeshWithService is newMesh with the local Service default/rebel-base
// (a global Service's local copy) on rebelFrontend, TCP.
func newMeshWithService(t testing.TB) *state.State {
	t.Helper()
	st := newMesh(t)
	setRebelService(t, st, []services.Frontend{{Addr: rebelFrontend.Addr(), Port: rebelFrontend.Port(), Protocol: "TCP"}})
	return st
}

// setRebelService sets the frontends of default/rebel-base (none: deleted).
func setRebelService(t testing.TB, st *state.State, fes []services.Frontend) {
	t.Helper()
	if err := st.Update(func(w *state.WriteTxn) error {
		if len(fes) == 0 {
			return w.DeleteLocalService("default", "rebel-base")
		}
		return w.UpsertLocalService(state.LocalService{Namespace: "default", Name: "rebel-base", Frontends: fes})
	}); err != nil {
		t.Fatal(err)
	}
}

// serviceEvent is x-wing's SYN to rebel-base:8080, which socket load
// balancing chose for the frontend fe (the zero AddrPort: not translated).
func serviceEvent(fe netip.AddrPort, proto uint8) bpf.Event {
	return bpf.Event{Time: t0, Verdict: bpf.Allowed, Reason: bpf.ReasonPolicyAllow, EndpointID: 12,
		SrcIdentity: xwingID, DstIdentity: rebelID, Src: ap(xwingIP, 43210), Dst: ap(rebelIP, 8080),
		Proto: proto, TCPFlags: bpf.TCPFlagSYN, Frontend: fe}
}

// A flow socket load balancing translated names the Service whose frontend
// the client addressed, the frontend, the backend chosen and its cluster;
// a frontend the state does not know (or of another protocol) is shown
// without a name; an untranslated flow has no service.
func TestRecorderServiceTranslation(t *testing.T) {
	r := NewRecorder(Config{Node: "n1", Resolver: NewStateResolver(newMeshWithService(t), "cluster1")})
	other := netip.MustParseAddrPort("10.96.0.99:80")
	for _, tc := range []struct {
		name  string
		ev    bpf.Event
		want  *flowapi.ServiceTranslation
		match bool // passes --service default/rebel-base
	}{
		{"through the Service", serviceEvent(rebelFrontend, bpf.ProtoTCP),
			&flowapi.ServiceTranslation{Namespace: "default", Name: "rebel-base", Frontend: rebelFrontend, Backend: ap(rebelIP, 8080), BackendCluster: "cluster2"},
			true},
		{"a frontend of no known Service", serviceEvent(other, bpf.ProtoTCP),
			&flowapi.ServiceTranslation{Frontend: other, Backend: ap(rebelIP, 8080), BackendCluster: "cluster2"}, false},
		{"the Service's address, another protocol", serviceEvent(rebelFrontend, bpf.ProtoUDP),
			&flowapi.ServiceTranslation{Frontend: rebelFrontend, Backend: ap(rebelIP, 8080), BackendCluster: "cluster2"}, false},
		{"not translated", serviceEvent(netip.AddrPort{}, bpf.ProtoTCP), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f flowapi.Flow
			r.flow(&tc.ev, &f)
			if d := cmp.Diff(tc.want, f.Service, equateFlows); d != "" {
				t.Errorf("service (-want +got):\n%s", d)
			}
			if f.Dst.Pod != "rebel-base" || f.Dst.Port != 8080 {
				t.Errorf("destination %+v, want the backend rebel-base:8080", f.Dst)
			}
			filter := flowapi.Filter{Service: []flowapi.ServiceRef{{Namespace: "default", Name: "rebel-base"}}}
			if got := filter.Match(&f); got != tc.match {
				t.Errorf("--service default/rebel-base matches: %v, want %v", got, tc.match)
			}
		})
	}
	// Without a resolver: the frontend and the backend, nothing named.
	var f flowapi.Flow
	ev := serviceEvent(rebelFrontend, bpf.ProtoTCP)
	NewRecorder(Config{}).flow(&ev, &f)
	if d := cmp.Diff(&flowapi.ServiceTranslation{Frontend: rebelFrontend, Backend: ap(rebelIP, 8080)}, f.Service, equateFlows); d != "" {
		t.Errorf("without a resolver (-want +got):\n%s", d)
	}
}

// The Service's name follows the state: deleted, its frontend is shown
// without a name; back on another address, the new one is named.
func TestResolverServiceFollowsTheState(t *testing.T) {
	st := newMeshWithService(t)
	res := NewStateResolver(st, "cluster1")
	backend := res.Resolve(rebelIP, rebelID)
	backend.Port = 8080
	name := func(fe netip.AddrPort) string { return res.Service(fe, bpf.ProtoTCP, &backend).Ref() }
	if got := name(rebelFrontend); got != "default/rebel-base" {
		t.Fatalf("before: %q", got)
	}
	// An IPv4-mapped frontend is the IPv4 one.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(rebelFrontend.Addr().As16()), 80)
	if got := res.Service(mapped, bpf.ProtoTCP, &backend); got.Ref() != "default/rebel-base" || got.Frontend != rebelFrontend {
		t.Errorf("IPv4-mapped frontend: %+v", got)
	}
	setRebelService(t, st, nil)
	if got := name(rebelFrontend); got != "" {
		t.Errorf("after the Service's deletion: %q, want none", got)
	}
	moved := netip.MustParseAddrPort("[fd00:96::10]:443")
	setRebelService(t, st, []services.Frontend{{Addr: moved.Addr(), Port: 443, Protocol: "TCP"}})
	if got := name(moved); got != "default/rebel-base" {
		t.Errorf("the new frontend %v: %q", moved, got)
	}
}

// The cache of resolved frontends stays bounded under a flood of them.
func TestResolverServiceCacheBounded(t *testing.T) {
	res := NewStateResolver(newMeshWithService(t), "cluster1")
	backend := flowapi.Endpoint{IP: rebelIP, Port: 8080}
	for i := range 3 * maxCached {
		res.Service(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), 80), bpf.ProtoTCP, &backend)
	}
	if len(res.svcs) > maxCached {
		t.Errorf("%d frontends cached, want at most %d", len(res.svcs), maxCached)
	}
}

// Recording a translated flow does not allocate once its ends and
// frontend are cached.
func TestRecordServiceAllocs(t *testing.T) {
	r := NewRecorder(Config{Node: "n1", Resolver: NewStateResolver(newMeshWithService(t), "cluster1")})
	ev := serviceEvent(rebelFrontend, bpf.ProtoTCP)
	var f flowapi.Flow
	record := func() {
		r.flow(&ev, &f)
		r.metrics.count(&f)
		r.ring.Add(&f)
	}
	record()
	if f.Service.Ref() != "default/rebel-base" {
		t.Fatalf("service %+v, want default/rebel-base", f.Service)
	}
	if n := testing.AllocsPerRun(100, record); n != 0 {
		t.Errorf("recording a translated flow allocates %v times, want 0", n)
	}
}

// BenchmarkRecordService is the agent's cost per datapath event for a flow
// socket load balancing translated (its frontend resolved to a Service)
// against the same flow untranslated (BenchmarkRecord's cost), measured
// in the same run: rounds of each, alternating which goes first; the
// medians and their ratio. Run with -benchtime=1x.
func BenchmarkRecordService(b *testing.B) {
	r := NewRecorder(Config{Node: "n1", Resolver: NewStateResolver(newMeshWithService(b), "cluster1")})
	translated := serviceEvent(rebelFrontend, bpf.ProtoTCP)
	plain := serviceEvent(netip.AddrPort{}, bpf.ProtoTCP)
	var f flowapi.Flow
	run := func(ev *bpf.Event, n int) float64 {
		start := time.Now()
		for range n {
			r.flow(ev, &f)
			r.metrics.count(&f)
			r.ring.Add(&f)
		}
		return float64(time.Since(start).Nanoseconds()) / float64(n)
	}
	const rounds, per = 11, 200000
	b.ReportAllocs()
	for range b.N {
		var tr, pl []float64
		for i := range rounds {
			if i%2 == 0 {
				tr, pl = append(tr, run(&translated, per)), append(pl, run(&plain, per))
			} else {
				pl, tr = append(pl, run(&plain, per)), append(tr, run(&translated, per))
			}
		}
		slices.Sort(tr)
		slices.Sort(pl)
		mt, mp := tr[rounds/2], pl[rounds/2]
		b.ReportMetric(mt, "ns/flow-service")
		b.ReportMetric(mp, "ns/flow-plain")
		b.ReportMetric(mt/mp, "ratio-service/plain")
		b.Logf("%d rounds x %d flows: median %.0f ns per translated flow, %.0f ns per untranslated flow: ratio %.2f", rounds, per, mt, mp, mt/mp)
	}
}
