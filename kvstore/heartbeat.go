package kvstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/internal/clock"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// DefaultHeartbeatInterval is how often the exporter refreshes the heartbeat.
const DefaultHeartbeatInterval = time.Minute

// RunHeartbeat writes the heartbeat key (an RFC3339 time) now and then every
// interval until ctx ends. Failures are retried at the next tick and logged.
func RunHeartbeat(ctx context.Context, cli *Client, paths schema.Paths, interval time.Duration, clk clock.Clock, log *slog.Logger) error {
	if interval <= 0 {
		interval = DefaultHeartbeatInterval
	}
	if clk == nil {
		clk = clock.Real{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for {
		if err := cli.Limit(ctx); err != nil {
			return ctx.Err()
		}
		if _, err := cli.Etcd().Put(ctx, paths.Heartbeat(), clk.Now().UTC().Format(time.RFC3339)); err != nil && ctx.Err() == nil {
			log.Warn("write heartbeat", "key", paths.Heartbeat(), "error", err)
		}
		t := clk.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
	}
}

// HeartbeatStatus tells how fresh a remote cluster's heartbeat is.
type HeartbeatStatus struct {
	// Last is the time the remote last wrote; zero if never seen.
	Last time.Time
	// Stale is true when Last is older than the monitor's bound (or the
	// heartbeat was never seen, or cannot be parsed).
	Stale bool
	// Err says why the heartbeat could not be read or parsed.
	Err string
}

// HeartbeatMonitor follows a remote cluster's heartbeat key.
type HeartbeatMonitor struct {
	cli   *Client
	paths schema.Paths
	bound time.Duration
	clk   clock.Clock

	mu   sync.Mutex // guards last, err
	last time.Time
	err  string
}

// NewHeartbeatMonitor flags the remote as stale when its heartbeat is older
// than bound (default three heartbeat intervals).
func NewHeartbeatMonitor(cli *Client, paths schema.Paths, bound time.Duration, clk clock.Clock) *HeartbeatMonitor {
	if bound <= 0 {
		bound = 3 * DefaultHeartbeatInterval
	}
	if clk == nil {
		clk = clock.Real{}
	}
	return &HeartbeatMonitor{cli: cli, paths: paths, bound: bound, clk: clk}
}

// Status reports the heartbeat's age against the bound, as of now.
func (m *HeartbeatMonitor) Status() HeartbeatStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := HeartbeatStatus{Last: m.last, Err: m.err}
	st.Stale = m.last.IsZero() || m.clk.Now().Sub(m.last) > m.bound
	return st
}

func (m *HeartbeatMonitor) observe(value []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := parseHeartbeat(value)
	if err != nil {
		m.err = fmt.Sprintf("heartbeat %q at %s is not an RFC3339 time", value, m.paths.Heartbeat())
		return
	}
	m.last, m.err = t, ""
}

func parseHeartbeat(value []byte) (time.Time, error) { return time.Parse(time.RFC3339, string(value)) }

// WaitHeartbeatMoved returns the heartbeat once the key holds a valid time
// other than since (possibly already when called), e.g. to tell that a
// peer whose heartbeat froze is alive again. A missing key or a value that
// is not a time is no move. It fails when the read or the watch fails, and
// returns ctx.Err() when ctx ends.
func WaitHeartbeatMoved(ctx context.Context, cli *Client, paths schema.Paths, since time.Time) (time.Time, error) {
	key := paths.Heartbeat()
	moved := func(value []byte) (time.Time, bool) {
		t, err := parseHeartbeat(value)
		return t, err == nil && !t.Equal(since)
	}
	resp, err := cli.Etcd().Get(ctx, key)
	if err != nil {
		return time.Time{}, fmt.Errorf("read heartbeat %s: %w", key, err)
	}
	if len(resp.Kvs) > 0 {
		if t, ok := moved(resp.Kvs[0].Value); ok {
			return t, nil
		}
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range cli.Etcd().Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return time.Time{}, fmt.Errorf("watch heartbeat %s: %w", key, err)
		}
		for _, ev := range wr.Events {
			if t, ok := moved(ev.Kv.Value); ok && ev.Type == clientv3.EventTypePut {
				return t, nil
			}
		}
	}
	if ctx.Err() != nil {
		return time.Time{}, ctx.Err()
	}
	return time.Time{}, fmt.Errorf("watch heartbeat %s: %w", key, errWatchClosed)
}

// Run follows the heartbeat key until ctx ends.
func (m *HeartbeatMonitor) Run(ctx context.Context) error {
	bo := backoff.Backoff{Clock: m.clk}
	for ctx.Err() == nil {
		err := m.follow(ctx)
		if ctx.Err() != nil {
			break
		}
		m.mu.Lock()
		m.err = err.Error()
		m.mu.Unlock()
		_ = bo.Wait(ctx)
	}
	return ctx.Err()
}

func (m *HeartbeatMonitor) follow(ctx context.Context) error {
	key := m.paths.Heartbeat()
	resp, err := m.cli.Etcd().Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read heartbeat %s: %w", key, err)
	}
	if len(resp.Kvs) > 0 {
		m.observe(resp.Kvs[0].Value)
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range m.cli.Etcd().Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch heartbeat %s: %w", key, err)
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypePut {
				m.observe(ev.Kv.Value)
			}
		}
	}
	return fmt.Errorf("watch heartbeat %s: %w", key, errWatchClosed)
}
