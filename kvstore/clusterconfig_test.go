package kvstore_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/internal/clock"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

func TestClusterConfigIsKeptInPlace(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{Cluster: "cluster1"})
	admin := env.Connect(t, kvstore.AdminUser)
	remote := env.Connect(t, kvstore.RemoteUser)
	key := env.Paths.ClusterConfig("cluster1")
	cfg := schema.ClusterConfig{ID: 7, Capabilities: schema.ClusterConfigCapabilities{SyncedCanaries: true, MaxConnectedClusters: 255}}
	var writes atomic.Int32
	run(t, func(ctx context.Context) error {
		return kvstore.RunClusterConfig(ctx, admin, env.Paths, "cluster1", cfg, nil, func() { writes.Add(1) })
	})
	const want = `{"id":7,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}`
	eventually(t, "config written", func() bool { return etcdState(t, admin.Etcd(), key)[key] == want })

	got, err := kvstore.GetClusterConfig(t.Context(), remote, env.Paths, "cluster1")
	if err != nil || got.ID != 7 || !got.Capabilities.SyncedCanaries {
		t.Fatalf("remote read of the cluster config: %+v, %v", got, err)
	}

	del(t, admin.Etcd(), key)
	eventually(t, "config re-created after deletion", func() bool { return etcdState(t, admin.Etcd(), key)[key] == want })
	put(t, admin.Etcd(), key, `{"id":9}`)
	eventually(t, "config restored after a change", func() bool { return etcdState(t, admin.Etcd(), key)[key] == want })
	// The callback runs after the Put returns, so it may lag the value the
	// test saw: wait for it rather than read it once.
	eventually(t, "three writes reported", func() bool { return writes.Load() >= 3 })
}

func TestGetClusterConfigErrors(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{Cluster: "cluster1"})
	admin := env.Connect(t, kvstore.AdminUser)
	_, err := kvstore.GetClusterConfig(t.Context(), admin, env.Paths, "cluster1")
	if !errors.Is(err, kvstore.ErrClusterConfig) || !strings.Contains(err.Error(), "is missing") {
		t.Fatalf("missing config: err = %v", err)
	}
	put(t, admin.Etcd(), env.Paths.ClusterConfig("cluster1"), `{"id":300,"capabilities":{"maxConnectedClusters":255}}`)
	_, err = kvstore.GetClusterConfig(t.Context(), admin, env.Paths, "cluster1")
	if !errors.Is(err, kvstore.ErrClusterConfig) || !errors.Is(err, schema.ErrMalformed) || !strings.Contains(err.Error(), "300") {
		t.Fatalf("out-of-range id: err = %v", err)
	}
	err = kvstore.RunClusterConfig(t.Context(), admin, env.Paths, "cluster1", schema.ClusterConfig{}, nil, nil)
	if !errors.Is(err, kvstore.ErrClusterConfig) {
		t.Fatalf("publishing an invalid config: err = %v", err)
	}
}

func TestHeartbeat(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{Cluster: "cluster1"})
	admin := env.Connect(t, kvstore.AdminUser)
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	writerClock := clock.NewFake(t0)
	run(t, func(ctx context.Context) error {
		return kvstore.RunHeartbeat(ctx, admin, env.Paths, time.Minute, writerClock, nil)
	})
	key := env.Paths.Heartbeat()
	eventually(t, "first heartbeat", func() bool { return etcdState(t, admin.Etcd(), key)[key] == "2026-11-22T10:00:00Z" })
	eventually(t, "writer waiting", func() bool { return writerClock.Waiters() == 1 })
	writerClock.Step(time.Minute)
	eventually(t, "second heartbeat", func() bool { return etcdState(t, admin.Etcd(), key)[key] == "2026-11-22T10:01:00Z" })

	readerClock := clock.NewFake(t0.Add(90 * time.Second))
	mon := kvstore.NewHeartbeatMonitor(env.Connect(t, kvstore.RemoteUser), env.Paths, 2*time.Minute, readerClock)
	run(t, mon.Run)
	eventually(t, "fresh heartbeat seen", func() bool { st := mon.Status(); return !st.Stale && st.Last.Equal(t0.Add(time.Minute)) })
	readerClock.Step(2 * time.Minute)
	if st := mon.Status(); !st.Stale {
		t.Fatalf("heartbeat 2m30s old against a 2m bound is not stale: %+v", st)
	}
	put(t, admin.Etcd(), key, "2026-11-22T10:03:00Z")
	eventually(t, "fresh again", func() bool { return !mon.Status().Stale })
	put(t, admin.Etcd(), key, "yesterday")
	eventually(t, "garbage reported", func() bool { return strings.Contains(mon.Status().Err, "not an RFC3339 time") })
}
