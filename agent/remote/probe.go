package remote

import (
	"context"
	"fmt"
	"time"

	"github.com/clustermesh/clustermesh/kvstore"
)

// Liveness (Config.ProbeInterval).
//
// The etcd client hides a cut: behind a partition its watches wait, and
// retry on a new transport, without reporting an error, so a peer that
// cannot be reached would look connected for as long as the cut lasts.
// Every ProbeInterval, the connection reads the peer's heartbeat key (a
// linearizable read: the peer's etcd answers only with a leader), with the
// interval as timeout. Once no read has answered for two intervals, the
// peer is reported unreachable: Status.Connected is false and LastFailure
// says since when. Nothing else changes: the peer's last-known state stays,
// its watches resume from their revision (or relist) when the cut heals,
// and the next answer reports it connected again.

// DefaultProbeInterval is how often a connection checks that its peer
// answers (Config.ProbeInterval).
const DefaultProbeInterval = 5 * time.Second

// probeMisses is how many intervals without an answer make a peer
// unreachable.
const probeMisses = 2

func (c *Cluster) probeInterval() time.Duration {
	if c.cfg.ProbeInterval > 0 {
		return c.cfg.ProbeInterval
	}
	return DefaultProbeInterval
}

// probe checks that the peer answers until ctx ends. It runs on the real
// clock (Config.Clock is for the heartbeat's TTL): a cut is real time.
func (c *Cluster) probe(ctx context.Context, cli *kvstore.Client) {
	interval := c.probeInterval()
	key := c.cfg.Paths.Heartbeat()
	last, unreachable := time.Now(), false
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, interval)
		_, err := cli.Etcd().Get(rctx, key)
		cancel()
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		if err == nil {
			c.mu.Lock()
			c.status.LastContact = now
			if unreachable {
				c.status.Connected = true
			}
			c.mu.Unlock()
			if unreachable {
				unreachable = false
				c.log.Info("peer answers again: connected", "silent-for", now.Sub(last).Round(100*time.Millisecond))
			}
			last = now
			continue
		}
		if unreachable || now.Sub(last) < probeMisses*interval {
			continue
		}
		unreachable = true
		msg := fmt.Sprintf("peer %s unreachable: no answer from its etcd at %v since %s (probed every %s; last error: %v); its last-known state is kept",
			c.cfg.Name, c.cfg.Client.Endpoints, last.UTC().Format(time.RFC3339), interval, err)
		c.mu.Lock()
		c.status.Connected = false
		c.status.Failures++
		c.status.LastFailure, c.status.LastFailureTime = msg, now
		c.mu.Unlock()
		c.log.Warn("peer unreachable: keeping its last-known state", "last-answer", last, "error", err)
	}
}
