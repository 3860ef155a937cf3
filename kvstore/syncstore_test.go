package kvstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/internal/backoff"
	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

const (
	testPrefix = "cilium/state/nodes/v1/cluster1/"
	testMarker = "cilium/synced/cluster1/cilium/state/nodes/v1"
)

var fastBackoff = backoff.Backoff{Min: 20 * time.Millisecond, Max: 300 * time.Millisecond}

func newSyncStore(t *testing.T, cli *kvstore.Client, mod func(*kvstore.SyncStoreConfig)) *kvstore.SyncStore {
	t.Helper()
	cfg := kvstore.SyncStoreConfig{Prefix: testPrefix, SyncedKey: testMarker, LeaseTTL: 10 * time.Second, Backoff: fastBackoff,
		RequestTimeout: time.Second}
	if mod != nil {
		mod(&cfg)
	}
	s, err := kvstore.NewSyncStore(cli, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSyncStoreWritesUpdatesAndDeletes(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{})
	admin := env.Connect(t, kvstore.AdminUser)
	s := newSyncStore(t, admin, nil)
	run(t, s.Run)

	for i := range 3 {
		if err := s.Upsert(keyN(testPrefix, i), []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
	}
	s.Synced()
	eventually(t, "synced marker", func() bool { return s.Status().Synced })
	want := map[string]string{keyN(testPrefix, 0): "v0", keyN(testPrefix, 1): "v1", keyN(testPrefix, 2): "v2"}
	if diff := cmp.Diff(want, etcdState(t, admin.Etcd(), testPrefix)); diff != "" {
		t.Fatalf("etcd after initial sync (-want +got):\n%s", diff)
	}
	if _, err := time.Parse(time.RFC3339, etcdState(t, admin.Etcd(), testMarker)[testMarker]); err != nil {
		t.Fatalf("synced marker is not an RFC3339 time: %v", err)
	}
	for k := range want {
		if leaseOf(t, admin.Etcd(), k) == 0 {
			t.Fatalf("key %s has no lease", k)
		}
	}

	s.Delete(keyN(testPrefix, 0))
	if err := s.Upsert(keyN(testPrefix, 1), []byte("v1b")); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{keyN(testPrefix, 1): "v1b", keyN(testPrefix, 2): "v2"}
	eventually(t, "delete and update", func() bool { return cmp.Equal(want, etcdState(t, admin.Etcd(), testPrefix)) })
	eventually(t, "empty queue", func() bool { return s.Status().Queued == 0 })

	if err := s.Upsert("cilium/state/nodes/v1/cluster2/n", []byte("x")); err == nil {
		t.Fatal("upsert outside the prefix was accepted")
	}
	if err := s.Upsert(keyN(testPrefix, 9), nil); err == nil {
		t.Fatal("upsert of an empty value was accepted")
	}
}

// The marker must vouch for the whole initial set: at the revision where it
// appears, every initial key is already in etcd.
func TestSyncStoreMarkerOnlyAfterFullInitialWrite(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{})
	admin := env.Connect(t, kvstore.AdminUser)
	cfg := env.ClientConfig(t, kvstore.AdminUser)
	cfg.RateLimitQPS, cfg.RateLimitBurst = 100, 1 // slow the writer down
	slow := kvtest.ConnectConfig(t, cfg)

	wch := admin.Etcd().Watch(t.Context(), testMarker)
	const n = 300
	s := newSyncStore(t, slow, func(c *kvstore.SyncStoreConfig) { c.BatchSize = 5 })
	for i := range n {
		if err := s.Upsert(keyN(testPrefix, i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	s.Synced()
	run(t, s.Run)

	var markerRev int64
	select {
	case wr := <-wch:
		if err := wr.Err(); err != nil || len(wr.Events) == 0 {
			t.Fatalf("watch marker: %v %v", err, wr.Events)
		}
		markerRev = wr.Events[0].Kv.ModRevision
	case <-time.After(30 * time.Second):
		t.Fatal("synced marker never written")
	}
	resp, err := admin.Etcd().Get(t.Context(), testPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(markerRev-1))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != n {
		t.Fatalf("just before the marker (revision %d) etcd held %d of the %d initial keys", markerRev-1, resp.Count, n)
	}
}

func TestSyncStoreNoMarkerBeforeSynced(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{})
	admin := env.Connect(t, kvstore.AdminUser)
	s := newSyncStore(t, admin, nil)
	run(t, s.Run)
	if err := s.Upsert(keyN(testPrefix, 1), []byte("v")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "key written", func() bool { return len(etcdState(t, admin.Etcd(), testPrefix)) == 1 })
	eventually(t, "empty queue", func() bool { return s.Status().Queued == 0 })
	if got := etcdState(t, admin.Etcd(), testMarker); len(got) != 0 || s.Status().Synced {
		t.Fatalf("marker written before Synced was called: %v", got)
	}
	s.Synced()
	eventually(t, "marker after Synced", func() bool { return len(etcdState(t, admin.Etcd(), testMarker)) == 1 })
}

// Keys upserted and deleted again before anything was written must not
// hold the marker back.
func TestSyncStoreMarkerNotBlockedByKeysNeverWritten(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{})
	admin := env.Connect(t, kvstore.AdminUser)
	s := newSyncStore(t, admin, nil)
	for i := range 3 {
		if err := s.Upsert(keyN(testPrefix, i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	s.Delete(keyN(testPrefix, 1))
	if err := s.Upsert(keyN(testPrefix, 2), []byte("v")); err != nil { // unchanged
		t.Fatal(err)
	}
	s.Synced()
	run(t, s.Run)
	eventually(t, "marker", func() bool { return s.Status().Synced })
	want := map[string]string{keyN(testPrefix, 0): "v", keyN(testPrefix, 2): "v"}
	if diff := cmp.Diff(want, etcdState(t, admin.Etcd(), testPrefix)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

// Keys left by a previous instance and not upserted again are deleted, but
// only once the new instance declared its initial set complete.
func TestSyncStoreDeletesStaleKeysOnlyAfterSynced(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{})
	admin := env.Connect(t, kvstore.AdminUser)
	for i := range 3 {
		if _, err := admin.Etcd().Put(t.Context(), keyN(testPrefix, i), "old"); err != nil {
			t.Fatal(err)
		}
	}
	s := newSyncStore(t, admin, nil)
	run(t, s.Run)
	if err := s.Upsert(keyN(testPrefix, 0), []byte("new")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "key 0 rewritten", func() bool { return etcdState(t, admin.Etcd(), testPrefix)[keyN(testPrefix, 0)] == "new" })
	if got := len(etcdState(t, admin.Etcd(), testPrefix)); got != 3 {
		t.Fatalf("stale keys deleted before Synced: %d keys left, want 3", got)
	}
	s.Synced()
	eventually(t, "marker", func() bool { return s.Status().Synced })
	want := map[string]string{keyN(testPrefix, 0): "new"}
	if diff := cmp.Diff(want, etcdState(t, admin.Etcd(), testPrefix)); diff != "" {
		t.Fatalf("after sync (-want +got):\n%s", diff)
	}
}

func TestSyncStoreSharesLeasesUpToLimit(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{})
	admin := env.Connect(t, kvstore.AdminUser)
	s := newSyncStore(t, admin, func(c *kvstore.SyncStoreConfig) { c.MaxKeysPerLease = 3; c.Workers = 1 })
	run(t, s.Run)
	for i := range 10 {
		if err := s.Upsert(keyN(testPrefix, i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	s.Synced()
	eventually(t, "marker", func() bool { return s.Status().Synced })
	perLease := map[clientv3.LeaseID]int{}
	for k := range etcdState(t, admin.Etcd(), "cilium/") {
		perLease[leaseOf(t, admin.Etcd(), k)]++
	}
	for id, n := range perLease {
		if id == 0 || n > 3 {
			t.Fatalf("lease %x holds %d keys (want a lease, at most 3 keys each): %v", id, n, perLease)
		}
	}
	if len(perLease) != 4 { // 11 keys (10 + marker) in leases of 3
		t.Fatalf("got %d leases for 11 keys at 3 per lease, want 4: %v", len(perLease), perLease)
	}
}

// A lost lease takes its keys and the marker with it; the store writes them
// all again, the marker last.
func TestSyncStoreLeaseLossRecreatesKeysAndMarker(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{})
	admin := env.Connect(t, kvstore.AdminUser)
	s := newSyncStore(t, admin, nil)
	run(t, s.Run)
	want := map[string]string{}
	for i := range 20 {
		want[keyN(testPrefix, i)] = fmt.Sprint(i)
		if err := s.Upsert(keyN(testPrefix, i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	s.Synced()
	eventually(t, "marker", func() bool { return s.Status().Synced })
	lease := leaseOf(t, admin.Etcd(), testMarker)
	if lease != leaseOf(t, admin.Etcd(), keyN(testPrefix, 0)) {
		t.Fatal("expected the keys and the marker to share one lease")
	}

	wch := admin.Etcd().Watch(t.Context(), "cilium/", clientv3.WithPrefix())
	if _, err := admin.Etcd().Revoke(t.Context(), lease); err != nil {
		t.Fatal(err)
	}
	eventually(t, "keys and marker back", func() bool {
		return cmp.Equal(want, etcdState(t, admin.Etcd(), testPrefix)) && len(etcdState(t, admin.Etcd(), testMarker)) == 1
	})
	if l := leaseOf(t, admin.Etcd(), keyN(testPrefix, 0)); l == lease || l == 0 {
		t.Fatalf("key rewritten with lease %x, want a new lease (old %x)", l, lease)
	}
	// Order: after the revocation's deletes, every key is put again before
	// the marker.
	puts := map[string]bool{}
	for wr := range wch {
		for _, ev := range wr.Events {
			k := string(ev.Kv.Key)
			if ev.Type != clientv3.EventTypePut {
				continue
			}
			if k == testMarker {
				if len(puts) != len(want) {
					t.Fatalf("marker re-written after only %d of %d keys", len(puts), len(want))
				}
				return
			}
			puts[k] = true
		}
	}
}

// The client reconnects by itself to a server restarted on the same data
// dir, and writes queued meanwhile land.
func TestSyncStoreSurvivesServerRestart(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{})
	admin := env.Connect(t, kvstore.AdminUser)
	s := newSyncStore(t, admin, nil)
	run(t, s.Run)
	if err := s.Upsert(keyN(testPrefix, 0), []byte("a")); err != nil {
		t.Fatal(err)
	}
	s.Synced()
	eventually(t, "marker", func() bool { return s.Status().Synced })

	env.Stop()
	if err := s.Upsert(keyN(testPrefix, 1), []byte("b")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a failed write while the server is down", func() bool { return s.Status().Failures > 0 })
	env.Restart(t)
	want := map[string]string{keyN(testPrefix, 0): "a", keyN(testPrefix, 1): "b"}
	eventually(t, "queued write after restart", func() bool { return cmp.Equal(want, etcdState(t, admin.Etcd(), testPrefix)) })
	if st := s.Status(); st.LastError == "" {
		t.Fatalf("status does not report the failure: %+v", st)
	}
}

func TestSyncStoreRejectsBadConfig(t *testing.T) {
	for _, cfg := range []kvstore.SyncStoreConfig{
		{Prefix: ""},
		{Prefix: "cilium/state/nodes/v1/c1"},
		{Prefix: "x/", LeaseTTL: time.Second},
	} {
		if _, err := kvstore.NewSyncStore(nil, cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}
