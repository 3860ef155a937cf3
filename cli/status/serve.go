package status

import (
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/clustermesh/clustermesh/internal/httpserve"
)

// Serve answers GET /v1/status, GET /v1/flows and the read routes of the
// CLI's read commands on addr from the agent at socket, until ctx ends:
// the agents' sidecar behind ProxySource, observe.ProxySource and
// agents.Proxy. It serves nothing else (the agent's other endpoints stay on
// the node).
func Serve(ctx context.Context, addr, socket string) error {
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on --serve %s: %w", addr, err)
	}
	err = httpserve.Run(ctx, l, Handler(socket))
	if err != nil {
		return fmt.Errorf("serve agent status: %w", err)
	}
	return nil
}

// Handler is the sidecar's routes, reading the agent at socket: GET
// /v1/status, and GET /v1/flows relayed as it streams (its query, its
// status code and its body, flushed as they come).
func Handler(socket string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		body, err := QueryRaw(r.Context(), socket)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	// The read routes of the CLI's read commands (policy trace and get,
	// identity, endpoint and service list; endpoint list reads the
	// enforcement from /v1/policies): answers computed from state, nothing
	// that writes.
	for _, path := range []string{"/v1/flows", "/v1/policy/trace", "/v1/policy/endpoints", "/v1/identities", "/v1/endpoints",
		"/v1/policies", "/v1/services", "/v1/services/detail"} {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) { relay(w, r, socket) })
	}
	return mux
}

// relay answers r with the agent's answer to the same GET, streamed.
func relay(w http.ResponseWriter, r *http.Request, socket string) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://agent"+r.URL.RequestURI(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		http.Error(w, fmt.Sprintf("agent API at %s: %v", socket, err), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	fl, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err != nil { // io.EOF: the agent's answer is complete
			return
		}
	}
}
