package localapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/agent/state"
)

// get serves GET path through the API's routes.
func get(t *testing.T, a *API, path string) (int, string) {
	t.Helper()
	mux := http.NewServeMux()
	a.Register(mux)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil))
	return w.Code, w.Body.String()
}

// The status, /readyz and /healthz, and a table in its documented JSON
// form (docs/agent-api.md).
func TestRoutes(t *testing.T) {
	st, err := state.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(func(w *state.WriteTxn) error {
		return w.UpsertIP(state.IPCacheRow{Prefix: netip.MustParsePrefix("10.2.1.5/32"), Cluster: "cluster2", ID: 131073,
			HostIP: netip.MustParseAddr("192.168.2.1")})
	}); err != nil {
		t.Fatal(err)
	}
	ready := false
	a := New(Config{
		Cluster: "cluster1", Node: "n1", State: st,
		Peers:       func() []remote.Status { return []remote.Status{{Name: "cluster2"}} },
		Reconcilers: func() []reconciler.Status { return []reconciler.Status{{Name: "ipcache", Desired: 1}} },
		Ready:       func() bool { return ready },
		Metrics:     prometheus.NewRegistry(),
	})

	code, body := get(t, a, "/v1/status")
	var status StatusResponse
	if err := json.Unmarshal([]byte(body), &status); code != http.StatusOK || err != nil {
		t.Fatalf("GET /v1/status: %d %s (%v)", code, body, err)
	}
	if status.Cluster != "cluster1" || status.Node != "n1" || len(status.Peers) != 1 || status.Reconcilers[0].Desired != 1 {
		t.Errorf("GET /v1/status: %+v", status)
	}
	if code, body := get(t, a, "/readyz"); code != http.StatusServiceUnavailable || body == "" {
		t.Errorf("GET /readyz before ready: %d %s, want 503 with the status", code, body)
	}
	ready = true
	if code, _ := get(t, a, "/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz when ready: %d, want 200", code)
	}
	if code, body := get(t, a, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz: %d %q", code, body)
	}
	if code, _ := get(t, a, "/metrics"); code != http.StatusOK {
		t.Errorf("GET /metrics: %d", code)
	}
	// No policy controller configured: an answer, not a panic.
	if code, body := get(t, a, "/v1/policies"); code != http.StatusOK {
		t.Errorf("GET /v1/policies without a policy controller: %d %s", code, body)
	}

	code, body = get(t, a, "/v1/ipcache")
	var raw []map[string]any
	if err := json.Unmarshal([]byte(body), &raw); code != http.StatusOK || err != nil {
		t.Fatalf("GET /v1/ipcache: %d %s (%v)", code, body, err)
	}
	want := []map[string]any{{"prefix": "10.2.1.5/32", "identity": 131073.0, "hostIP": "192.168.2.1", "cluster": "cluster2"}}
	if d := cmp.Diff(want, raw); d != "" {
		t.Errorf("GET /v1/ipcache (-want +got):\n%s", d)
	}
}
