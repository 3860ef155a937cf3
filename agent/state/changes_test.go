package state

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/clustermesh/clustermesh/identity"
)

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func hostEntry4(last byte, id identity.NumericIdentity) IPCacheRow {
	return IPCacheRow{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 2, 1, last}), 32), Cluster: "cluster2", ID: id}
}

// A subscription starts lost, then returns the changes of its tables only,
// commit after commit, with the host entries of a block told apart, and
// wakes only for its tables.
func TestSubscription(t *testing.T) {
	s := newState(t)
	sub := s.Subscribe(TableIPCache)
	defer sub.Close()
	<-sub.Changed() // the first Next is due
	if _, _, lost := sub.Next(); !lost {
		t.Fatal("the first Next is not lost: the subscriber would not read the whole state")
	}
	update := func(f func(w *WriteTxn) error) {
		t.Helper()
		if err := s.Update(f); err != nil {
			t.Fatal(err)
		}
	}
	update(func(w *WriteTxn) error { return w.UpsertNode("cluster2", node("cluster2", "n1")) })
	select {
	case <-sub.Changed():
		t.Fatal("a node commit woke an ipcache subscriber")
	default:
	}
	update(func(w *WriteTxn) error {
		for i := range byte(3) {
			if err := w.UpsertIP(hostEntry4(i+1, 1000)); err != nil {
				return err
			}
		}
		return nil
	})
	update(func(w *WriteTxn) error {
		if err := w.UpsertIP(hostEntry4(2, 1001)); err != nil { // changed
			return err
		}
		if err := w.UpsertIP(hostEntry4(3, 1000)); err != nil { // unchanged
			return err
		}
		return w.DeleteIP("cluster2", hostEntry4(1, 0).Prefix)
	})
	<-sub.Changed()
	changes, sn, lost := sub.Next()
	if lost {
		t.Fatal("lost without falling behind")
	}
	var got []string
	for _, c := range changes {
		if c.Table != TableIPCache {
			t.Fatalf("change of table %s", c.Table)
		}
		for _, p := range IPCachePrefixes(c) {
			got = append(got, p.String())
		}
	}
	want := []string{"10.2.1.1/32", "10.2.1.2/32", "10.2.1.3/32", "10.2.1.1/32", "10.2.1.2/32"}
	if !slices.Equal(got, want) {
		t.Fatalf("changed prefixes %v, want %v", got, want)
	}
	if e, ok := sn.IPCacheRow(hostEntry4(2, 0).Prefix); !ok || e.ID != 1001 {
		t.Fatalf("the snapshot does not include the changes: %+v %v", e, ok)
	}
	if changes, _, _ := sub.Next(); len(changes) != 0 {
		t.Fatalf("changes read twice: %v", changes)
	}
}

// A subscriber that falls further behind than the limit loses its changes
// (and is told); its queue stays bounded; and a subscriber of other tables
// keeps nothing of a busy table's changes.
func TestSubscriptionFallsBehind(t *testing.T) {
	s := newState(t)
	s.changes.limit = 10
	sub := s.Subscribe(TableIPCache)
	defer sub.Close()
	quiet := s.Subscribe(TableNodes)
	defer quiet.Close()
	sub.Next()
	quiet.Next()
	for i := range byte(30) {
		if err := s.Update(func(w *WriteTxn) error { return w.UpsertIP(hostEntry4(i+1, 1000)) }); err != nil {
			t.Fatal(err)
		}
		s.changes.mu.Lock()
		n, m := len(sub.queue), len(quiet.queue)
		s.changes.mu.Unlock()
		if n > 10 || m != 0 {
			t.Fatalf("after %d commits: the ipcache subscriber holds %d changes (limit 10), the nodes subscriber %d", i+1, n, m)
		}
	}
	if _, _, lost := sub.Next(); !lost {
		t.Fatal("a subscriber 30 changes behind a limit of 10 is not told it lost changes")
	}
	if changes, _, lost := quiet.Next(); lost || len(changes) != 0 {
		t.Fatalf("the nodes subscriber got %d changes, lost %v", len(changes), lost)
	}
	// After a lost Next, changes are queued again.
	if err := s.Update(func(w *WriteTxn) error { return w.UpsertIP(hostEntry4(99, 1000)) }); err != nil {
		t.Fatal(err)
	}
	if changes, _, lost := sub.Next(); lost || len(changes) != 1 {
		t.Fatalf("after resynchronising: %d changes, lost %v; want 1, false", len(changes), lost)
	}
}

// A table watcher wakes on its tables only.
func TestWatchTables(t *testing.T) {
	s := newState(t)
	w := s.WatchTables(TableNodes, TableServices)
	ch := w.Changed(t.Context())
	if err := s.Update(func(w *WriteTxn) error { return w.UpsertIP(hostEntry4(1, 1000)) }); err != nil {
		t.Fatal(err)
	}
	if isClosed(ch) {
		t.Fatal("an ipcache commit woke a watcher of nodes and services")
	}
	if again := w.Changed(t.Context()); again != ch {
		t.Fatal("a second call without a change made a new channel")
	}
	if err := s.Update(func(w *WriteTxn) error { return w.UpsertService("cluster2", service("cluster2", "ns", "svc")) }); err != nil {
		t.Fatal(err)
	}
	<-ch // closed by the services commit
	ch = w.Changed(t.Context())
	if isClosed(ch) {
		t.Fatal("a new channel is closed before any change")
	}
	if err := s.Update(func(w *WriteTxn) error { return w.UpsertNode("cluster2", node("cluster2", "n1")) }); err != nil {
		t.Fatal(err)
	}
	<-ch
}

// A table watcher's wait ends with its context: a consumer that stopped
// leaves no goroutine waiting for a change that may never come (the
// package's TestMain checks that none is left).
func TestWatchTablesEndsWithContext(t *testing.T) {
	s := newState(t)
	w := s.WatchTables(TableNodes)
	ctx, cancel := context.WithCancel(t.Context())
	ch := w.Changed(ctx)
	if isClosed(ch) {
		t.Fatal("closed before any change or the end of its context")
	}
	cancel()
	<-ch
	// The next call waits again, for a change.
	ch = w.Changed(t.Context())
	if isClosed(ch) {
		t.Fatal("a new channel is closed before any change")
	}
	if err := s.Update(func(w *WriteTxn) error { return w.UpsertNode("cluster2", node("cluster2", "n1")) }); err != nil {
		t.Fatal(err)
	}
	<-ch
}
