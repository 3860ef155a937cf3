package status

import (
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/clustermesh/clustermesh/internal/httpserve"
)

// Serve answers GET /v1/status on addr with the status of the agent at
// socket, until ctx ends: the agents' sidecar behind ProxySource. It
// serves nothing else (the agent's other endpoints stay on the node).
func Serve(ctx context.Context, addr, socket string) error {
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on --serve %s: %w", addr, err)
	}
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
	err = httpserve.Run(ctx, l, mux)
	if err != nil {
		return fmt.Errorf("serve agent status: %w", err)
	}
	return nil
}
