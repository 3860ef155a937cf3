package kvstore_test

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clustermesh/clustermesh/kvstore"
	"github.com/clustermesh/clustermesh/kvstore/kvtest"
)

// A store whose keys are packed (WatchStoreConfig.Keys) keeps the store's
// guarantees for packed and unpacked keys alike: the keys deleted while it
// was cut off are reported deleted once, from the watch history or at the
// relist after a compaction; unchanged keys are not reported again at a
// relist; a successor that adopts its keys reports the ones deleted while
// neither ran, under their own names.
func TestWatchStorePackedKeys(t *testing.T) {
	const prefix = "cilium/state/ip/v1/default/"
	// Packed: the canonical IPv4 addresses; not packed: the rest (a
	// non-canonical spelling must be reported as itself).
	keys := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "010.0.0.4", "fd00::5", "10.0.0.0/24"}
	for _, compact := range []bool{false, true} {
		name := "resume from history"
		if compact {
			name = "relist after compaction"
		}
		t.Run(name, func(t *testing.T) {
			env := kvtest.Start(t, kvtest.Options{})
			admin := env.Connect(t, kvstore.AdminUser)
			for _, k := range keys {
				put(t, admin.Etcd(), prefix+k, "v1")
			}
			proxy := kvtest.StartProxy(t, env.URL[len("https://"):])
			cfg := env.ClientConfig(t, kvstore.RemoteUser)
			cfg.Endpoints = []string{"https://" + proxy.Addr}
			rec := newRecorder()
			w, err := kvstore.NewWatchStore(kvtest.ConnectConfig(t, cfg), kvstore.WatchStoreConfig{Prefix: prefix, PageSize: 2, Backoff: fastBackoff, Keys: kvstore.IPv4Keys{}}, rec)
			if err != nil {
				t.Fatal(err)
			}
			run(t, w.Run)
			eventually(t, "synced", func() bool { _, _, s := rec.snapshot(); return s })

			proxy.Cut()
			gone := []string{prefix + "10.0.0.1", prefix + "010.0.0.4", prefix + "fd00::5"}
			for _, k := range gone {
				del(t, admin.Etcd(), k)
			}
			put(t, admin.Etcd(), prefix+"10.0.0.2", "v2")
			rev := put(t, admin.Etcd(), prefix+"10.0.0.9", "new")
			if compact {
				if _, err := admin.Etcd().Compact(t.Context(), rev, clientv3.WithCompactPhysical()); err != nil {
					t.Fatal(err)
				}
			}
			proxy.Restore()

			want := etcdState(t, admin.Etcd(), prefix)
			eventually(t, "mirror equal to etcd", func() bool { s, _, _ := rec.snapshot(); return cmp.Equal(want, s) })
			_, events, _ := rec.snapshot()
			for _, k := range gone {
				if n := count(events, "delete "+k); n != 1 {
					t.Fatalf("%s deleted while disconnected reported %d times, want once: %v", k, n, events)
				}
			}
			for _, k := range []string{"10.0.0.3", "10.0.0.0/24"} {
				if n := count(events, "upsert "+prefix+k+"=v1"); n != 1 {
					t.Fatalf("unchanged %s reported %d times, want once: %v", k, n, events)
				}
				if n := count(events, "delete "+prefix+k); n != 0 {
					t.Fatalf("unchanged %s reported deleted: %v", k, events)
				}
			}
			if got := w.Status().Entries; got != len(want) {
				t.Fatalf("entries %d, want %d", got, len(want))
			}

		})
	}
}

func count(events []string, ev string) int {
	n := 0
	for _, e := range events {
		if e == ev {
			n++
		}
	}
	return n
}

// Adopt carries packed and unpacked keys alike to the successor.
func TestWatchStoreAdoptPackedKeys(t *testing.T) {
	const prefix = "cilium/state/ip/v1/default/"
	env := kvtest.Start(t, kvtest.Options{})
	admin := env.Connect(t, kvstore.AdminUser)
	keys := []string{"10.0.0.1", "10.0.0.2", "010.0.0.3", "fd00::4"}
	for _, k := range keys {
		put(t, admin.Etcd(), prefix+k, "v")
	}
	cli := env.Connect(t, kvstore.RemoteUser)
	rec := newRecorder()
	cfg := kvstore.WatchStoreConfig{Prefix: prefix, PageSize: 2, Backoff: fastBackoff, Keys: kvstore.IPv4Keys{}}
	first, err := kvstore.NewWatchStore(cli, cfg, rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	eventually(t, "first store synced", func() bool { _, _, s := rec.snapshot(); return s })
	cancel()
	<-done

	del(t, admin.Etcd(), prefix+"10.0.0.1")
	del(t, admin.Etcd(), prefix+"010.0.0.3")
	second, err := kvstore.NewWatchStore(cli, cfg, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Adopt(first); err != nil {
		t.Fatal(err)
	}
	// first handed its keys over: adopting it again hands over nothing
	// (and does not panic).
	if third, err := kvstore.NewWatchStore(cli, cfg, newRecorder()); err != nil {
		t.Fatal(err)
	} else if err := third.Adopt(first); err != nil {
		t.Fatalf("adopt a store adopted already: %v", err)
	}
	run(t, second.Run)
	eventually(t, "second store synced", func() bool { _, ev, _ := rec.snapshot(); return len(ev) == 5+5 })
	state, events, _ := rec.snapshot()
	second2 := events[5:]
	slices.Sort(second2)
	wantSecond := []string{"delete " + prefix + "010.0.0.3", "delete " + prefix + "10.0.0.1",
		"synced", "upsert " + prefix + "10.0.0.2=v", "upsert " + prefix + "fd00::4=v"}
	if diff := cmp.Diff(wantSecond, second2); diff != "" {
		t.Fatalf("the successor's events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{prefix + "10.0.0.2": "v", prefix + "fd00::4": "v"}, state); diff != "" {
		t.Fatalf("state (-want +got):\n%s", diff)
	}
}
