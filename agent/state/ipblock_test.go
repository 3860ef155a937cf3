package state

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/identity"
)

// TestHostBlocks checks that host entries grouped in one block behave as
// rows of their own: a snapshot never sees a later transaction change a
// block, owners are kept per entry, the last delete removes the block and
// its prefix length, and a drain leaves the other clusters' entries.
func TestHostBlocks(t *testing.T) {
	s := newState(t)
	upsert := func(w *WriteTxn, cluster, prefix string, id uint32) {
		t.Helper()
		if err := w.UpsertIP(IPCacheFromSchema(cluster, pfx(prefix), ipEntry(id, "192.168.0.1"))); err != nil {
			t.Fatal(err)
		}
	}
	err := s.Update(func(w *WriteTxn) error {
		upsert(w, "c2", "10.0.0.9/32", 1)
		upsert(w, "c2", "10.0.0.1/32", 2)
		upsert(w, "c3", "10.0.0.5/32", 3)
		upsert(w, "c2", "10.0.1.1/32", 4)
		upsert(w, "c2", "10.0.0.9/32", 5) // replaces, in the block created above
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	before := s.Snapshot()
	want := []string{"ip c2 10.0.0.1/32 id=2 host=192.168.0.1", "ip c2 10.0.0.9/32 id=5 host=192.168.0.1",
		"ip c2 10.0.1.1/32 id=4 host=192.168.0.1", "ip c3 10.0.0.5/32 id=3 host=192.168.0.1"}
	if d := cmp.Diff(want, dump(t, before)); d != "" {
		t.Fatalf("after the first commit (-want +got):\n%s", d)
	}
	if n := before.Count(TableIPCache); n != 4 {
		t.Errorf("Count(ipcache) = %d, want 4", n)
	}

	err = s.Update(func(w *WriteTxn) error {
		upsert(w, "c2", "10.0.0.2/32", 6)
		if err := w.DeleteIP("c2", pfx("10.0.0.5/32")); err != nil { // c3's: a no-op
			return err
		}
		if err := w.DeleteIP("c2", pfx("10.0.1.1/32")); err != nil { // the block's last entry
			return err
		}
		return w.Drain("c2")
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, dump(t, before)); d != "" {
		t.Errorf("the first snapshot changed (-want +got):\n%s", d)
	}
	after := s.Snapshot()
	if d := cmp.Diff([]string{"ip c3 10.0.0.5/32 id=3 host=192.168.0.1"}, dump(t, after)); d != "" {
		t.Errorf("after the drain (-want +got):\n%s", d)
	}
	checkPrefixLens(t, after)
	if _, ok := after.LookupIP(pfx("10.0.0.9/32").Addr()); ok {
		t.Error("LookupIP(10.0.0.9) found a drained entry")
	}

	err = s.Update(func(w *WriteTxn) error { return w.DeleteIP("c3", pfx("10.0.0.5/32")) })
	if err != nil {
		t.Fatal(err)
	}
	last := s.Snapshot()
	if n := last.Count(TableIPCache); n != 0 {
		t.Errorf("Count(ipcache) = %d, want 0", n)
	}
	checkPrefixLens(t, last)
}

// TestHostBlockLevels checks a block's pages and groups: entries in
// several pages, groups and blocks, a change reported as the one prefix
// it changed, and an emptied page and group dropped.
func TestHostBlockLevels(t *testing.T) {
	s := newState(t)
	addrs := []string{"10.0.0.1/32", "10.0.1.1/32", "10.0.17.1/32", "10.0.17.200/32", "10.0.255.255/32", "10.1.0.1/32", "fd00::1:1/128", "fd00::ff01/128"}
	err := s.Update(func(w *WriteTxn) error {
		for i, a := range addrs {
			if err := w.UpsertIP(IPCacheRow{Prefix: pfx(a), Cluster: "c2", ID: 1000 + identity.NumericIdentity(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sub := s.Subscribe(TableIPCache)
	defer sub.Close()
	sub.Next()
	for _, step := range []struct {
		write func(w *WriteTxn) error
		want  []string
	}{
		{func(w *WriteTxn) error {
			return w.UpsertIP(IPCacheRow{Prefix: pfx("10.0.17.200/32"), Cluster: "c2", ID: 7})
		}, []string{"10.0.17.200/32"}},
		{func(w *WriteTxn) error { return w.DeleteIP("c2", pfx("10.0.17.1/32")) }, []string{"10.0.17.1/32"}},
		{func(w *WriteTxn) error { return w.DeleteIP("c2", pfx("10.0.17.200/32")) }, []string{"10.0.17.200/32"}},
		{func(w *WriteTxn) error {
			return w.UpsertIP(IPCacheRow{Prefix: pfx("fd00::1:2/128"), Cluster: "c3", ID: 8})
		}, []string{"fd00::1:2/128"}},
	} {
		if err := s.Update(step.write); err != nil {
			t.Fatal(err)
		}
		cs, _, _ := sub.Next()
		var got []string
		for _, c := range cs {
			for _, p := range IPCachePrefixes(c) {
				got = append(got, p.String())
			}
		}
		if d := cmp.Diff(step.want, got); d != "" {
			t.Errorf("changed prefixes (-want +got):\n%s", d)
		}
	}
	sn := s.Snapshot()
	if n := sn.Count(TableIPCache); n != len(addrs)-1 {
		t.Errorf("Count(ipcache) = %d, want %d", n, len(addrs)-1)
	}
	b, _ := first[ipBlock](sn.txn, TableIPCache, IndexID, pfx("10.0.0.1/32"))
	if b == nil || b.groups[1] != nil || b.groups[0] == nil || b.groups[15] == nil {
		t.Fatalf("block 10.0.0.0/16: %+v, want groups 0 and 15 only", b)
	}
	if e, ok := sn.IPCacheRow(pfx("10.0.255.255/32")); !ok || e.ID != 1004 {
		t.Errorf("10.0.255.255 = %+v, %v", e, ok)
	}
	if err := s.Update(func(w *WriteTxn) error { return w.Drain("c2") }); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"ip c3 fd00::1:2/128 id=8 host=invalid IP"}, dump(t, s.Snapshot())); d != "" {
		t.Errorf("after the drain (-want +got):\n%s", d)
	}
	checkPrefixLens(t, s.Snapshot())
}
