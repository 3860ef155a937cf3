// Package localapi is the agent's local read API (HTTP/JSON, see
// docs/agent-api.md): the status of the peers and reconcilers, the state's
// ipcache, identities, endpoints and policies, the services' selected
// backends, the datapath's recent flows (a query or a stream) and drops,
// and /healthz, /readyz and /metrics. Serve serves a handler on the unix socket --api-socket.
//
// Rules: the API only reads, through the functions of its Config (no
// dependency on the agent that wires it); every answer is computed from
// one snapshot of the state per request.
package localapi

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clustermesh/clustermesh/agent/cniapi"
	"github.com/clustermesh/clustermesh/agent/flows"
	"github.com/clustermesh/clustermesh/agent/policy"
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/internal/httpserve"
	"github.com/clustermesh/clustermesh/internal/version"
)

// Config is what the API reads.
type Config struct {
	Cluster string // the local cluster's name
	Node    string // this node's name
	State   *state.State
	// Peers returns the status of every configured peer.
	Peers func() []remote.Status
	// Reconcilers returns the status of every datapath reconciler.
	Reconcilers func() []reconciler.Status
	// Ready reports whether every source delivered its initial state
	// (/readyz).
	Ready func() bool
	// PolicyProblems returns the invalid parts of policies, by policy.
	PolicyProblems func() map[policy.PolicyKey][]policy.Problem
	// Policy runs a read-only function on the agent's policy engine, in
	// the goroutine that owns it (policywatch.Controller.Inspect): GET
	// /v1/policy/trace and /v1/policy/endpoints. nil: those answer 503.
	Policy func(ctx context.Context, fn func(*policy.Engine)) error
	// Flows is the recorder of the datapath's flows (GET /v1/flows and
	// /v1/drops); nil when none are recorded (--datapath=none).
	Flows *flows.Recorder
	// Metrics is served as /metrics.
	Metrics prometheus.Gatherer
}

// API answers the local API's read routes.
type API struct {
	cfg Config
}

// New returns the API reading cfg.
func New(cfg Config) *API { return &API{cfg: cfg} }

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Status()) })
	mux.HandleFunc("GET /v1/ipcache", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.IPCache()) })
	mux.HandleFunc("GET /v1/identities", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Identities()) })
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Services()) })
	mux.HandleFunc("GET /v1/policies", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Policies()) })
	mux.HandleFunc("GET /v1/endpoints", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Endpoints()) })
	mux.HandleFunc("GET /v1/services/detail", a.getServicesDetail)
	mux.HandleFunc("GET /v1/policy/trace", a.getTrace)
	mux.HandleFunc("GET /v1/policy/endpoints", a.getEndpointPolicies)
	mux.HandleFunc("GET /v1/flows", a.getFlows)
	mux.HandleFunc("GET /v1/drops", a.getDrops)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", a.Readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.cfg.Metrics, promhttp.HandlerOpts{}))
}

// StatusResponse is GET /v1/status.
type StatusResponse struct {
	Cluster     string              `json:"cluster"`
	Node        string              `json:"node"`
	Version     version.Info        `json:"version"`
	Peers       []remote.Status     `json:"peers"`
	Reconcilers []reconciler.Status `json:"reconcilers"`
}

// Status is what GET /v1/status answers.
func (a *API) Status() StatusResponse {
	return StatusResponse{Cluster: a.cfg.Cluster, Node: a.cfg.Node, Version: version.Get(), Peers: a.cfg.Peers(), Reconcilers: a.cfg.Reconcilers()}
}

// Readyz answers 200 once the local cluster, the policy controller and
// every configured peer delivered their state (the datapath may be pruned),
// 503 before; the body is the status. It serves /readyz on the socket and
// over TCP (--health-addr).
func (a *API) Readyz(w http.ResponseWriter, _ *http.Request) {
	st := a.Status()
	w.Header().Set("Content-Type", "application/json")
	if !a.cfg.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(st)
}

func writeJSON(w http.ResponseWriter, v any) { httpserve.WriteJSON(w, http.StatusOK, v) }

// writeError answers code with the body of every error of the agent's
// API, cniapi.Error.
func writeError(w http.ResponseWriter, code int, err error) {
	httpserve.WriteJSON(w, code, cniapi.Error{Error: err.Error()})
}
