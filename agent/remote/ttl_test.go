package remote_test

import (
	"context"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/internal/testing/meshtest"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
	"github.com/clustermesh/clustermesh/kvstore"
)

// With a cache TTL, a peer whose heartbeat stops is drained after the TTL
// and read again from scratch when it is back; while heartbeats flow,
// nothing is revoked.
func TestCacheTTLRevokesAStalePeer(t *testing.T) {
	p := meshtest.StartPeer(t, "cluster2", 2)
	paths := p.Env.Paths
	p.Put(t, paths.Node("cluster2", "n1"), node2)
	p.Synced()
	admin := p.Env.Connect(t, kvstore.AdminUser)
	meshtest.Go(t, func(ctx context.Context) error {
		return kvstore.RunHeartbeat(ctx, admin, paths, 100*time.Millisecond, nil, nil)
	})
	sink := newMemSink()
	c, err := remote.New(remote.Config{
		Name: "cluster2", Client: p.Env.ClientConfig(t, kvstore.RemoteUser), Paths: paths,
		LocalName: "cluster1", LocalID: 1, MaxConnectedClusters: 255, Registry: remote.NewRegistry("cluster1", 1),
		Sink: sink, Backoff: fast, CacheTTL: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	meshtest.Go(t, c.Run)
	eventually(t, "peer ready", func() bool { return c.Status().Ready && len(sink.keys()) == 1 })

	// For longer than the TTL, with heartbeats flowing: nothing is revoked.
	testutil.Consistently(t, 4*time.Second, "peer state kept while its heartbeat is fresh", func() bool {
		return !c.Status().Revoked && len(sink.keys()) == 1
	})

	p.Env.Stop()
	eventually(t, "stale peer revoked and drained", func() bool { return c.Status().Revoked && len(sink.keys()) == 0 })

	p.Env.Restart(t)
	eventually(t, "peer read again after it is back", func() bool {
		st := c.Status()
		return !st.Revoked && st.Ready && len(sink.keys()) == 1
	})
}
