package kvstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

func newWatchStore(t *testing.T, cli *kvstore.Client, marker string) (*kvstore.WatchStore, *recorder) {
	t.Helper()
	rec := newRecorder()
	w, err := kvstore.NewWatchStore(cli, kvstore.WatchStoreConfig{Prefix: testPrefix, SyncedKey: marker, PageSize: 2, Backoff: fastBackoff}, rec)
	if err != nil {
		t.Fatal(err)
	}
	return w, rec
}

func put(t *testing.T, cli *clientv3.Client, k, v string) int64 {
	t.Helper()
	resp, err := cli.Put(t.Context(), k, v)
	if err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
	return resp.Header.Revision
}

func del(t *testing.T, cli *clientv3.Client, k string) int64 {
	t.Helper()
	resp, err := cli.Delete(t.Context(), k)
	if err != nil {
		t.Fatalf("delete %s: %v", k, err)
	}
	return resp.Header.Revision
}

func TestWatchStoreListsThenWatchesInOrder(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{})
	admin := env.Connect(t, kvstore.AdminUser)
	for i := range 5 { // more than one page of 2
		put(t, admin.Etcd(), keyN(testPrefix, i), "v")
	}
	put(t, admin.Etcd(), "cilium/state/nodes/v1/cluster10/x", "other prefix")
	w, rec := newWatchStore(t, env.Connect(t, kvstore.RemoteUser), "")
	run(t, w.Run)
	eventually(t, "synced", func() bool { _, _, s := rec.snapshot(); return s })

	put(t, admin.Etcd(), keyN(testPrefix, 9), "a")
	put(t, admin.Etcd(), keyN(testPrefix, 9), "b")
	del(t, admin.Etcd(), keyN(testPrefix, 9))
	put(t, admin.Etcd(), keyN(testPrefix, 9), "c")
	del(t, admin.Etcd(), keyN(testPrefix, 0))

	want := []string{
		"upsert " + keyN(testPrefix, 0) + "=v", "upsert " + keyN(testPrefix, 1) + "=v", "upsert " + keyN(testPrefix, 2) + "=v",
		"upsert " + keyN(testPrefix, 3) + "=v", "upsert " + keyN(testPrefix, 4) + "=v", "synced",
		"upsert " + keyN(testPrefix, 9) + "=a", "upsert " + keyN(testPrefix, 9) + "=b", "delete " + keyN(testPrefix, 9),
		"upsert " + keyN(testPrefix, 9) + "=c", "delete " + keyN(testPrefix, 0),
	}
	eventually(t, "all events", func() bool { _, ev, _ := rec.snapshot(); return len(ev) >= len(want) })
	_, events, _ := rec.snapshot()
	if diff := cmp.Diff(want, events); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

// Nothing is read before the exporter's synced marker exists.
func TestWatchStoreWaitsForSyncedMarker(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{})
	admin := env.Connect(t, kvstore.AdminUser)
	put(t, admin.Etcd(), keyN(testPrefix, 0), "half of the picture")
	w, rec := newWatchStore(t, env.Connect(t, kvstore.RemoteUser), testMarker)
	run(t, w.Run)
	eventually(t, "waiting for the marker", func() bool { return w.Status().WaitingForMarker })
	put(t, admin.Etcd(), keyN(testPrefix, 1), "the other half")
	if _, events, _ := rec.snapshot(); len(events) != 0 {
		t.Fatalf("events before the marker: %v", events)
	}
	put(t, admin.Etcd(), testMarker, "2026-11-22T00:00:00Z")
	eventually(t, "synced", func() bool { _, _, s := rec.snapshot(); return s })
	state, events, _ := rec.snapshot()
	want := map[string]string{keyN(testPrefix, 0): "half of the picture", keyN(testPrefix, 1): "the other half"}
	if diff := cmp.Diff(want, state); diff != "" {
		t.Fatalf("state (-want +got):\n%s", diff)
	}
	if events[len(events)-1] != "synced" {
		t.Fatalf("synced is not the last initial event: %v", events)
	}
}

// A key deleted while the reader was cut off arrives as a delete after
// reconnection: from the watch history when it is still there, and as a
// synthetic delete from a relist when it was compacted away.
func TestWatchStoreReconnect(t *testing.T) {
	for _, compact := range []bool{false, true} {
		name := "resume from history"
		if compact {
			name = "relist after compaction"
		}
		t.Run(name, func(t *testing.T) {
			env := kvtest.Start(t, kvtest.Options{})
			admin := env.Connect(t, kvstore.AdminUser)
			for i := range 3 {
				put(t, admin.Etcd(), keyN(testPrefix, i), "v1")
			}
			proxy := kvtest.StartProxy(t, env.URL[len("https://"):])
			cfg := env.ClientConfig(t, kvstore.RemoteUser)
			cfg.Endpoints = []string{"https://" + proxy.Addr}
			w, rec := newWatchStore(t, kvtest.ConnectConfig(t, cfg), "")
			run(t, w.Run)
			eventually(t, "synced", func() bool { _, _, s := rec.snapshot(); return s })

			proxy.Cut()
			del(t, admin.Etcd(), keyN(testPrefix, 0))
			put(t, admin.Etcd(), keyN(testPrefix, 1), "v2")
			rev := put(t, admin.Etcd(), keyN(testPrefix, 7), "new")
			if compact {
				if _, err := admin.Etcd().Compact(t.Context(), rev, clientv3.WithCompactPhysical()); err != nil {
					t.Fatal(err)
				}
			}
			proxy.Restore()

			want := etcdState(t, admin.Etcd(), testPrefix)
			eventually(t, "mirror equal to etcd", func() bool { s, _, _ := rec.snapshot(); return cmp.Equal(want, s) })
			_, events, _ := rec.snapshot()
			deletes := 0
			for _, ev := range events {
				if ev == "delete "+keyN(testPrefix, 0) {
					deletes++
				}
			}
			if deletes != 1 {
				t.Fatalf("key deleted while disconnected reported %d times, want once: %v", deletes, events)
			}
			for _, ev := range events {
				if ev == "delete "+keyN(testPrefix, 2) {
					t.Fatalf("a key that never changed was reported deleted: %v", events)
				}
			}
			wantLists := uint64(1)
			if compact {
				wantLists = 2
			}
			if got := w.Status().Lists; got != wantLists {
				t.Fatalf("lists = %d, want %d", got, wantLists)
			}
		})
	}
}

// Values that fail to decode are reported and treated as absent.
func TestTypedHandler(t *testing.T) {
	var got []string
	h := &kvstore.TypedHandler[int]{
		Decode: func(_ string, v []byte) (int, error) {
			if string(v) == "bad" {
				return 0, errBad
			}
			return len(v), nil
		},
		Upsert:  func(k string, n int) { got = append(got, "upsert "+k) },
		Delete:  func(k string) { got = append(got, "delete "+k) },
		Invalid: func(k string, err error) { got = append(got, "invalid "+k) },
		Synced:  func() { got = append(got, "synced") },
	}
	h.OnUpsert("a", []byte("ok"))
	h.OnUpsert("b", []byte("bad"))
	h.OnSynced()
	h.OnUpsert("a", []byte("bad"))
	h.OnDelete("a")
	h.OnDelete("b")
	want := []string{"upsert a", "invalid b", "synced", "invalid a", "delete a"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

var errBad = errorString("bad value")

type errorString string

func (e errorString) Error() string { return string(e) }

// A store that adopts a stopped store's keys reports the keys deleted while
// neither ran; the keys still there are reported again (the handler's state
// is the predecessor's).
func TestWatchStoreAdopt(t *testing.T) {
	env := kvtest.Start(t, kvtest.Options{})
	admin := env.Connect(t, kvstore.AdminUser)
	for i := range 3 {
		put(t, admin.Etcd(), keyN(testPrefix, i), "v")
	}
	cli := env.Connect(t, kvstore.RemoteUser)
	first, rec := newWatchStore(t, cli, "")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	eventually(t, "first store synced", func() bool { _, _, s := rec.snapshot(); return s })
	cancel()
	<-done

	del(t, admin.Etcd(), keyN(testPrefix, 1))
	put(t, admin.Etcd(), keyN(testPrefix, 2), "changed")
	second, err := kvstore.NewWatchStore(cli, kvstore.WatchStoreConfig{Prefix: testPrefix, PageSize: 2, Backoff: fastBackoff}, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Adopt(first); err != nil {
		t.Fatal(err)
	}
	run(t, second.Run)
	eventually(t, "second store synced", func() bool { _, ev, _ := rec.snapshot(); return len(ev) == 4+4 })
	state, events, _ := rec.snapshot()
	wantEvents := []string{
		"upsert " + keyN(testPrefix, 0) + "=v", "upsert " + keyN(testPrefix, 1) + "=v", "upsert " + keyN(testPrefix, 2) + "=v", "synced",
		"upsert " + keyN(testPrefix, 0) + "=v", "upsert " + keyN(testPrefix, 2) + "=changed", "delete " + keyN(testPrefix, 1), "synced",
	}
	if diff := cmp.Diff(wantEvents, events); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{keyN(testPrefix, 0): "v", keyN(testPrefix, 2): "changed"}, state); diff != "" {
		t.Fatalf("state (-want +got):\n%s", diff)
	}

	other, err := kvstore.NewWatchStore(cli, kvstore.WatchStoreConfig{Prefix: "cilium/state/ip/v1/default/", Backoff: fastBackoff}, newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Adopt(second); !errors.Is(err, kvstore.ErrInvalidConfig) {
		t.Fatalf("adopting a store of another prefix: %v", err)
	}
}
