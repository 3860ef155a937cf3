package server

import (
	"context"
	"fmt"

	"github.com/clustermesh/clustermesh/identity"
)

// recordDrops keeps the datapath's drops for GET /v1/drops until ctx ends.
// It owns the reader of the datapath's events: opened here and closed on
// return, so that Run, which waits for it before closing the datapath,
// closes the reader first.
func (a *Agent) recordDrops(ctx context.Context) error {
	r, err := a.bpf.Events()
	if err != nil {
		return fmt.Errorf("open the datapath's events: %w", err)
	}
	defer func() { _ = r.Close() }()
	return a.drops.Run(ctx, r)
}

// clusterOf returns the cluster of identity id as the state knows it now,
// "" for an identity it does not hold (reserved ones, or one already gone).
// A snapshot is a lock-free read transaction: cheap enough per drop.
func (a *Agent) clusterOf(id uint32) string {
	row, ok := a.State.Snapshot().Identity(identity.NumericIdentity(id))
	if !ok {
		return ""
	}
	return row.Cluster
}
