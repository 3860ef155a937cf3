package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/remote"
)

// StatusResponse is GET /v1/status.
type StatusResponse struct {
	Cluster     string              `json:"cluster"`
	Node        string              `json:"node"`
	Peers       []remote.Status     `json:"peers"`
	Reconcilers []reconciler.Status `json:"reconcilers"`
}

// PrefixEntry is one element of GET /v1/ipcache: a row of the agent's
// ipcache table (state.IPCacheRow) in the API's JSON form.
type PrefixEntry struct {
	Prefix   string `json:"prefix"`
	Identity uint32 `json:"identity"`
	HostIP   string `json:"hostIP,omitempty"`
	Cluster  string `json:"cluster"`
}

// IdentityEntry is one element of GET /v1/identities.
type IdentityEntry struct {
	ID      uint32 `json:"id"`
	Cluster string `json:"cluster"`
	Labels  string `json:"labels"`
}

// serveAPI serves the local API (HTTP/JSON, see docs/agent-api.md) on the
// unix socket until ctx ends.
func (a *Agent) serveAPI(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(a.cfg.APISocket), 0o750); err != nil {
		return fmt.Errorf("create the directory of --api-socket: %w", err)
	}
	if err := os.Remove(a.cfg.APISocket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove a stale --api-socket: %w", err)
	}
	// Listen on a temporary name, then rename: a client never finds the
	// socket file before it accepts connections (between bind and listen
	// it would be refused).
	tmp := a.cfg.APISocket + ".tmp"
	_ = os.Remove(tmp)
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return fmt.Errorf("listen on --api-socket %s: %w", a.cfg.APISocket, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Rename(tmp, a.cfg.APISocket); err != nil {
		_ = l.Close()
		return fmt.Errorf("put the API socket in place at %s: %w", a.cfg.APISocket, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Status()) })
	mux.HandleFunc("GET /v1/ipcache", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.IPCache()) })
	mux.HandleFunc("GET /v1/identities", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Identities()) })
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Services()) })
	mux.HandleFunc("GET /v1/policies", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Policies()) })
	mux.HandleFunc("GET /v1/endpoints", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Endpoints()) })
	mux.HandleFunc("GET /v1/drops", a.getDrops)
	a.cniRoutes(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.Registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() { errc <- srv.Serve(l) })
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	wg.Wait()
	_ = os.Remove(a.cfg.APISocket)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Status is what GET /v1/status answers.
func (a *Agent) Status() StatusResponse {
	return StatusResponse{Cluster: a.cfg.ClusterName, Node: a.cfg.NodeName, Peers: a.peers.Status(),
		Reconcilers: a.reconcilerStatus()}
}

// IPCache is what GET /v1/ipcache answers, sorted by prefix.
func (a *Agent) IPCache() []PrefixEntry {
	rows := a.State.Snapshot().IPCache()
	out := make([]PrefixEntry, 0, len(rows))
	for _, r := range rows {
		e := PrefixEntry{Prefix: r.Prefix.String(), Identity: uint32(r.ID), Cluster: r.Cluster}
		if r.HostIP.IsValid() {
			e.HostIP = r.HostIP.String()
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix < out[j].Prefix })
	return out
}

// Identities is what GET /v1/identities answers, sorted by ID.
func (a *Agent) Identities() []IdentityEntry {
	rows := a.State.Snapshot().Identities()
	out := make([]IdentityEntry, 0, len(rows))
	for _, r := range rows {
		out = append(out, IdentityEntry{ID: uint32(r.ID), Cluster: r.Cluster, Labels: r.LabelsKey})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ServiceEntry is one element of GET /v1/services: a frontend and the
// backends new connections to it use.
type ServiceEntry struct {
	Namespace string          `json:"namespace"`
	Name      string          `json:"name"`
	Frontend  string          `json:"frontend"` // addr:port/protocol
	Backends  []BackendTarget `json:"backends"`
}

// BackendTarget is a selected backend of a ServiceEntry.
type BackendTarget struct {
	Address string `json:"address"` // addr:port
	Cluster string `json:"cluster"`
}

// Services is what GET /v1/services answers, sorted by namespace, name and
// frontend.
func (a *Agent) Services() []ServiceEntry {
	desired := desiredServices(a.State.Snapshot(), a.cfg.ClusterName)
	out := make([]ServiceEntry, 0, len(desired))
	for k, svc := range desired {
		e := ServiceEntry{Namespace: svc.Namespace, Name: svc.Name, Backends: []BackendTarget{},
			Frontend: fmt.Sprintf("%s/%s", netip.AddrPortFrom(k.Addr, k.Port), k.Protocol)}
		for _, b := range svc.Backends {
			e.Backends = append(e.Backends, BackendTarget{Address: netip.AddrPortFrom(b.Addr, b.Port).String(), Cluster: b.Cluster})
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		if x.Namespace != y.Namespace {
			return x.Namespace < y.Namespace
		}
		if x.Name != y.Name {
			return x.Name < y.Name
		}
		return x.Frontend < y.Frontend
	})
	return out
}

// EndpointEntry is one element of GET /v1/endpoints: a pod of this node.
type EndpointEntry struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	IPs       []string `json:"ips"`
	Identity  uint32   `json:"identity"`
	Labels    string   `json:"labels"`
}

// Endpoints is what GET /v1/endpoints answers, sorted by namespace and
// name.
func (a *Agent) Endpoints() []EndpointEntry {
	rows := a.State.Snapshot().Endpoints()
	out := make([]EndpointEntry, 0, len(rows))
	for _, r := range rows {
		e := EndpointEntry{Namespace: r.Namespace, Name: r.Name, IPs: []string{}, Identity: uint32(r.ID), Labels: r.Labels.SortedKVStoreString()}
		for _, ip := range r.IPs {
			e.IPs = append(e.IPs, ip.String())
		}
		out = append(out, e)
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (a *Agent) reconcilerStatus() []reconciler.Status {
	out := make([]reconciler.Status, 0, len(a.reconcilers))
	for _, r := range a.reconcilers {
		out = append(out, r.Status())
	}
	return out
}

// readyz answers 200 once the local cluster, the policy controller and
// every configured peer delivered their state (the datapath may be pruned),
// 503 before; the body is the status.
func (a *Agent) readyz(w http.ResponseWriter, _ *http.Request) {
	st := a.Status()
	w.Header().Set("Content-Type", "application/json")
	if !a.ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(st)
}
