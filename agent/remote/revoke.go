package remote

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/clustermesh/clustermesh/internal/clock"
	"github.com/clustermesh/clustermesh/kvstore"
)

// Revocation (Config.CacheTTL).
//
// Rules: a peer whose heartbeat has not changed for longer than the TTL,
// on our clock, is drained once its stores stopped (nothing it sends after
// the drain is accepted); then nothing of it is read again until its
// heartbeat key holds another time than at the revocation: a peer that is
// reachable but whose exporter is stuck (its heartbeat frozen, in the past
// or in the future) stays revoked instead of being read again and revoked
// again every TTL. While it waits, Status.Revoked stays true and
// Status.Waiting says why.

func (c *Cluster) clock() clock.Clock {
	if c.cfg.Clock == nil {
		return clock.Real{}
	}
	return c.cfg.Clock
}

// staleHeartbeat returns the peer's last heartbeat once it has not changed
// for longer than the cache TTL, or ok false when ctx ends first.
func (c *Cluster) staleHeartbeat(ctx context.Context, cli *kvstore.Client) (last time.Time, ok bool) {
	clk := c.clock()
	mon := kvstore.NewHeartbeatMonitor(cli, c.cfg.Paths, c.cfg.CacheTTL, clk)
	var wg sync.WaitGroup
	mctx, stop := context.WithCancel(ctx)
	defer func() { stop(); wg.Wait() }()
	wg.Go(func() { _ = mon.Run(mctx) })
	// Staleness is measured on our clock from the last time the heartbeat
	// changed, so that clock skew between clusters does not matter.
	var seen time.Time
	seenAt := clk.Now()
	for {
		t := clk.NewTimer(max(c.cfg.CacheTTL/10, 10*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return time.Time{}, false
		case <-t.C():
		}
		st := mon.Status()
		if !st.Last.Equal(seen) {
			seen, seenAt = st.Last, clk.Now()
		}
		if clk.Now().Sub(seenAt) > c.cfg.CacheTTL {
			return st.Last, true
		}
	}
}

// revoke drains the peer, whose heartbeat stopped at last; its stores must
// have stopped.
func (c *Cluster) revoke(last time.Time) {
	c.log.Warn("peer's heartbeat did not change for longer than the cache TTL: revoking its state until it moves",
		"last-heartbeat", last, "ttl", c.cfg.CacheTTL)
	c.mu.Lock()
	c.status.Revoked = true
	c.revokedAt, c.awaitingHeartbeat = last, true
	c.mu.Unlock()
	c.forget()
}

// forget drains everything the peer announced and makes the next
// connection read it again from scratch. The peer's stores must have
// stopped.
func (c *Cluster) forget() {
	c.mu.Lock()
	wasReady := c.status.Ready
	c.status.Ready, c.status.Synced = false, map[Kind]bool{}
	c.v = nil
	c.mu.Unlock()
	c.cfg.Sink.Drain(c.cfg.Name)
	c.readyChanged(wasReady, false)
}

// awaitHeartbeat returns at once unless the peer was revoked; then it
// returns once the peer's heartbeat moved since the revocation.
func (c *Cluster) awaitHeartbeat(ctx context.Context, cli *kvstore.Client) error {
	c.mu.Lock()
	since, waiting := c.revokedAt, c.awaitingHeartbeat
	if waiting {
		was := "never seen"
		if !since.IsZero() {
			was = "still " + since.UTC().Format(time.RFC3339)
		}
		c.status.Waiting = fmt.Sprintf("state revoked: waiting for the peer's heartbeat (%s, %s) to change before reading its state again",
			c.cfg.Paths.Heartbeat(), was)
	}
	c.mu.Unlock()
	if !waiting {
		return nil
	}
	now, err := kvstore.WaitHeartbeatMoved(ctx, cli, c.cfg.Paths, since)
	if err != nil {
		return fmt.Errorf("revoked peer %s: %w", c.cfg.Name, err)
	}
	c.mu.Lock()
	c.awaitingHeartbeat, c.status.Waiting = false, ""
	c.mu.Unlock()
	c.log.Info("peer's heartbeat moved since its state was revoked: reading it again", "heartbeat", now, "was", since)
	return nil
}
