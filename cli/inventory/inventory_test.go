package inventory_test

import (
	"bytes"
	"context"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/localapi"
	"github.com/clustermesh/clustermesh/agent/policy"
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/cli/agents"
	"github.com/clustermesh/clustermesh/cli/inventory"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
	"github.com/clustermesh/clustermesh/kvstore/schema"
	"github.com/clustermesh/clustermesh/services"
)

func labels(cluster, app string) identity.Labels {
	return identity.PodLabels(cluster, "default", "default", map[string]string{"name": app}, nil)
}

// serve serves the real local API of an agent of cluster1 on node over a
// unix socket, its state written by fill.
func serve(t *testing.T, node string, fill func(w *state.WriteTxn) error) string {
	t.Helper()
	st, err := state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(fill); err != nil {
		t.Fatal(err)
	}
	api := localapi.New(localapi.Config{Cluster: "cluster1", Node: node, State: st, Metrics: prometheus.NewRegistry(),
		Peers: func() []remote.Status { return nil }, Reconcilers: func() []reconciler.Status { return nil }, Ready: func() bool { return true },
		PolicyProblems: func() map[policy.PolicyKey][]policy.Problem { return nil }})
	dir, err := os.MkdirTemp("", "cm-inv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	socket := filepath.Join(dir, "agent.sock")
	mux := http.NewServeMux()
	api.Register(mux)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- localapi.Serve(ctx, socket, mux) }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(t, 5*time.Second, "the agent's socket", func() bool { _, err := os.Stat(socket); return err == nil })
	return socket
}

// Two nodes of cluster1 that know cluster2: identities of both clusters
// merged, each node's endpoints with their enforcement, the global Service
// with every candidate backend; a node that cannot be asked is noted.
func TestInventory(t *testing.T) {
	common := func(w *state.WriteTxn) error {
		for _, id := range []struct {
			c   string
			id  identity.NumericIdentity
			app string
		}{{"cluster1", 65537, "x-wing"}, {"cluster2", 131073, "rebel-base"}} {
			if err := w.UpsertIdentity(id.c, id.id, labels(id.c, id.app)); err != nil {
				return err
			}
		}
		if err := w.UpsertNode("cluster2", schema.Node{Name: "n1", Cluster: "cluster2", IPv4AllocCIDR: schema.NewCIDR(netip.MustParsePrefix("10.2.0.0/24"))}); err != nil {
			return err
		}
		if err := w.UpsertService("cluster2", schema.ClusterService{Cluster: "cluster2", Namespace: "default", Name: "rebel-base", Shared: true,
			Backends: map[string]schema.PortConfiguration{"10.2.0.7": {"": {Protocol: "TCP", Port: 80}}}}); err != nil {
			return err
		}
		return w.UpsertLocalService(state.LocalService{Namespace: "default", Name: "rebel-base",
			Annotations: services.Annotations{Global: true, Shared: true},
			Frontends:   []services.Frontend{{Addr: netip.MustParseAddr("10.96.0.10"), Port: 80, Protocol: "TCP"}},
			Backends:    []services.Backend{{Addr: netip.MustParseAddr("10.1.0.5"), Ports: map[string]schema.L4Addr{"": {Protocol: "TCP", Port: 80}}, Ready: true}}})
	}
	n1 := serve(t, "n1", func(w *state.WriteTxn) error {
		if err := common(w); err != nil {
			return err
		}
		if err := w.UpsertEndpoint(state.Endpoint{Namespace: "default", Name: "x-wing", IPs: []netip.Addr{netip.MustParseAddr("10.1.0.9")},
			ID: 65537, Labels: labels("cluster1", "x-wing")}); err != nil {
			return err
		}
		return w.UpsertEndpointPolicy(state.EndpointPolicyRow{Key: "default/x-wing", DatapathID: 1,
			Policy: datapath.EndpointPolicy{Identity: 65537, EnforceEgress: true}})
	})
	n2 := serve(t, "n2", func(w *state.WriteTxn) error {
		if err := common(w); err != nil {
			return err
		}
		return w.UpsertEndpoint(state.Endpoint{Namespace: "default", Name: "rebel-base-a", IPs: []netip.Addr{netip.MustParseAddr("10.1.0.5")},
			ID: 65538, Labels: labels("cluster1", "rebel-base")})
	})
	src, _ := agents.Sockets{"n1": n1, "n2": n2, "n3": "/nonexistent/agent.sock"}.Agents(t.Context())

	ids, err := inventory.ListIdentities(t.Context(), src, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, id := range ids.Identities {
		if id.ID > 8 {
			got = append(got, id.Cluster+":"+id.Labels)
		}
	}
	want := []string{"cluster1:" + labels("cluster1", "x-wing").SortedKVStoreString(), "cluster2:" + labels("cluster2", "rebel-base").SortedKVStoreString()}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("identities (-want +got):\n%s", d)
	}
	if len(ids.Notes) != 1 || !strings.Contains(ids.Notes[0], "node n3") {
		t.Errorf("notes %v, want n3 not asked", ids.Notes)
	}
	only2, _ := inventory.ListIdentities(t.Context(), src, "cluster2")
	if len(only2.Identities) != 1 || only2.Identities[0].ID != 131073 {
		t.Errorf("--cluster cluster2: %+v", only2.Identities)
	}

	eps, err := inventory.ListEndpoints(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	var epLines []string
	for _, e := range eps.Endpoints {
		epLines = append(epLines, strings.Join([]string{e.Node, e.Namespace + "/" + e.Name, e.Cluster}, " ")+
			map[bool]string{true: " computed", false: " pending"}[e.PolicyComputed]+map[bool]string{true: " egress-enforced", false: ""}[e.EnforceEgress])
	}
	if d := cmp.Diff([]string{"n2 default/rebel-base-a cluster1 pending", "n1 default/x-wing cluster1 computed egress-enforced"}, epLines); d != "" {
		t.Errorf("endpoints (-want +got):\n%s", d)
	}
	var out bytes.Buffer
	if err := inventory.WriteEndpoints(&out, eps); err != nil || !strings.Contains(out.String(), "enforced") || !strings.Contains(out.String(), "# node n3") {
		t.Errorf("table (%v):\n%s", err, out.String())
	}

	svcs, err := inventory.ListServices(t.Context(), src, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs.Services) != 1 || len(svcs.Services[0].Backends) != 2 || !svcs.Services[0].Backends[0].Selected || !svcs.Services[0].Backends[1].Selected ||
		svcs.Services[0].Backends[1].Why != "exported ready by cluster2" || svcs.Services[0].Affinity != "none" {
		t.Errorf("services: %+v", svcs.Services)
	}
	out.Reset()
	if err := inventory.WriteServices(&out, svcs); err != nil || !strings.Contains(out.String(), "default/rebel-base") {
		t.Errorf("table (%v):\n%s", err, out.String())
	}

	none, _ := agents.Sockets{"n3": "/nonexistent/agent.sock"}.Agents(t.Context())
	if _, err := inventory.ListIdentities(t.Context(), none, ""); err == nil || !strings.Contains(err.Error(), "no agent answered") {
		t.Errorf("no agent: %v", err)
	}
	if _, err := inventory.ListServices(t.Context(), none, false); err == nil || !strings.Contains(err.Error(), "no agent answered") {
		t.Errorf("no agent: %v", err)
	}
}
