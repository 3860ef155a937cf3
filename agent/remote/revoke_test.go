package remote_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
	"github.com/clustermesh/clustermesh/kvstore"
)

// A peer that stays reachable while its heartbeat is frozen is revoked
// once, and stays revoked (not read again and revoked again every TTL)
// until its heartbeat moves; then it is read again.
func TestRevocationWaitsForTheHeartbeatToMove(t *testing.T) {
	for _, tc := range []struct {
		name, frozen string
	}{
		{name: "frozen in the past", frozen: "2020-01-01T00:00:00Z"},
		{name: "frozen in the future", frozen: "2099-01-01T00:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const ttl = time.Second
			p := startNamedPeer(t, "cluster2", 2)
			paths := p.Env.Paths
			admin := p.Env.Connect(t, kvstore.AdminUser)
			if _, err := admin.Etcd().Put(t.Context(), paths.Heartbeat(), tc.frozen); err != nil {
				t.Fatal(err)
			}
			sink := newMemSink()
			c, err := remote.New(remote.Config{
				Name: "cluster2", Client: p.Env.ClientConfig(t, kvstore.RemoteUser), Paths: paths,
				LocalName: "cluster1", LocalID: 1, MaxConnectedClusters: 255, Registry: remote.NewRegistry("cluster1", 1),
				Sink: sink, Backoff: fast, CacheTTL: ttl,
			})
			if err != nil {
				t.Fatal(err)
			}
			meshtest.Go(t, c.Run)
			eventually(t, "revoked and drained", func() bool {
				st := c.Status()
				return st.Revoked && !st.Ready && len(sink.keys()) == 0 &&
					strings.Contains(st.Waiting, "waiting for the peer's heartbeat") && strings.Contains(st.Waiting, tc.frozen)
			})
			// Three TTLs: before, the peer was read again after each
			// backoff and revoked again after each TTL.
			testutil.Consistently(t, 3*ttl, "still revoked while the heartbeat is frozen", func() bool {
				st := c.Status()
				return st.Revoked && !st.Ready && st.Waiting != "" && len(sink.keys()) == 0
			})
			// A value that is not a time is no heartbeat either.
			if _, err := admin.Etcd().Put(t.Context(), paths.Heartbeat(), "garbage"); err != nil {
				t.Fatal(err)
			}
			if _, err := admin.Etcd().Put(t.Context(), paths.Heartbeat(), tc.frozen); err != nil {
				t.Fatal(err)
			}
			testutil.Consistently(t, 300*time.Millisecond, "still revoked after a rewrite of the same heartbeat", func() bool {
				return c.Status().Revoked && len(sink.keys()) == 0
			})

			meshtest.Go(t, func(ctx context.Context) error {
				return kvstore.RunHeartbeat(ctx, admin, paths, 100*time.Millisecond, nil, nil)
			})
			eventually(t, "read again once the heartbeat moves", func() bool {
				st := c.Status()
				return !st.Revoked && st.Waiting == "" && st.Ready && sink.has("node cluster2/n1")
			})
		})
	}
}
