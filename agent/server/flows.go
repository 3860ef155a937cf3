package server

import (
	"context"
	"fmt"
)

// recordFlows turns the datapath's events into flows for GET /v1/flows
// until ctx ends. It owns the reader of the datapath's events: opened here
// and closed on return, so that Run, which waits for it before closing the
// datapath, closes the reader first.
func (a *Agent) recordFlows(ctx context.Context) error {
	r, err := a.bpf.Events()
	if err != nil {
		return fmt.Errorf("open the datapath's events: %w", err)
	}
	defer func() { _ = r.Close() }()
	return a.flows.Run(ctx, r)
}
