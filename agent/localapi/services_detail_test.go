package localapi

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/kvstore/schema"
	"github.com/clustermesh/clustermesh/services"
)

// Every candidate backend of a global Service with affinity local: the
// ready local one selected, the not-ready one and the peer's (local
// backends are ready) left out with why, a peer's backend outside its pod
// CIDR rejected and counted.
func TestServicesDetail(t *testing.T) {
	st, err := state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tcp80 := map[string]schema.L4Addr{"": {Protocol: "TCP", Port: 80}}
	update := func(fn func(w *state.WriteTxn) error) {
		t.Helper()
		if err := st.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	update(func(w *state.WriteTxn) error {
		if err := w.UpsertLocalService(state.LocalService{Namespace: "default", Name: "rebel-base",
			Annotations: services.Annotations{Global: true, Shared: true, Affinity: services.AffinityLocal},
			Frontends:   []services.Frontend{{Addr: netip.MustParseAddr("10.96.0.10"), Port: 80, Protocol: "TCP"}},
			Backends: []services.Backend{
				{Addr: netip.MustParseAddr("10.1.0.5"), Ports: tcp80, Ready: true},
				{Addr: netip.MustParseAddr("10.1.0.6"), Ports: tcp80},
			}}); err != nil {
			return err
		}
		cidr := &schema.CIDR{Prefix: netip.MustParsePrefix("10.2.0.0/24")}
		if err := w.UpsertNode("cluster2", schema.Node{Name: "n1", Cluster: "cluster2", IPv4AllocCIDR: cidr}); err != nil {
			return err
		}
		return w.UpsertService("cluster2", schema.ClusterService{Cluster: "cluster2", Namespace: "default", Name: "rebel-base", Shared: true,
			Backends: map[string]schema.PortConfiguration{
				"10.2.0.7": {"": {Protocol: "TCP", Port: 80}},
				"10.9.0.1": {"": {Protocol: "TCP", Port: 80}}, // not cluster2's
			}})
	})
	a := New(Config{Cluster: "cluster1", Node: "n1", State: st})
	want := []ServiceDetail{{Namespace: "default", Name: "rebel-base", Global: true, Shared: true, Affinity: "local",
		Frontends: []string{"10.96.0.10:80/TCP"},
		Backends: []BackendDetail{
			{Cluster: "cluster1", Address: "10.1.0.5", Ports: []string{"80/TCP"}, Ready: true, Selected: true, Why: "local and ready"},
			{Cluster: "cluster1", Address: "10.1.0.6", Ports: []string{"80/TCP"}, Why: "not ready"},
			{Cluster: "cluster2", Address: "10.2.0.7", Ports: []string{"80/TCP"}, Ready: true, Why: "affinity local: local backends of its family are ready"},
		},
		Rejected: map[string]int{"cluster2": 1}}}
	if d := cmp.Diff(want, a.ServicesDetail()); d != "" {
		t.Errorf("ServicesDetail (-want +got):\n%s", d)
	}

	// The local backend gone: the peer's is selected, and why.
	update(func(w *state.WriteTxn) error {
		ls, _ := st.Snapshot().LocalService("default", "rebel-base")
		ls.Backends = ls.Backends[1:]
		return w.UpsertLocalService(ls)
	})
	got := a.ServicesDetail()[0].Backends
	if len(got) != 2 || !got[1].Selected || got[1].Why != "exported by cluster2; affinity local, and no local backend of its family is ready" {
		t.Errorf("no ready local backend: %+v", got)
	}
	if code, _ := get(t, a, "/v1/services/detail"); code != 200 {
		t.Errorf("GET /v1/services/detail: %d", code)
	}
}
