package state

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestLookupIP(t *testing.T) {
	s := newState(t)
	sink := s.RemoteSink()
	for _, e := range []struct {
		cluster, prefix string
		id              uint32
	}{
		{"c2", "10.2.0.0/16", 16},
		{"c2", "10.2.3.0/24", 24},
		{"c2", "10.2.3.4/32", 32},
		{"c3", "10.3.0.0/16", 316},
		{"c3", "10.3.7.9/20", 320}, // host bits set: stored as 10.3.0.0/20
		{"c2", "fd00:2::/48", 48},
		{"c2", "fd00:2:0:1::/64", 64},
		{"c2", "fd00:2:0:1::5/128", 128},
		{"c3", "::ffff:10.4.0.0/112", 416}, // IPv4-mapped: stored as 10.4.0.0/16
	} {
		sink.UpsertIP(e.cluster, pfx(e.prefix), ipEntry(e.id, ""))
	}
	tests := []struct {
		addr   string
		want   uint32 // 0: miss
		prefix string
	}{
		{"10.2.3.4", 32, "10.2.3.4/32"},
		{"10.2.3.5", 24, "10.2.3.0/24"},
		{"10.2.4.4", 16, "10.2.0.0/16"},
		{"10.3.15.1", 320, "10.3.0.0/20"},
		{"10.3.16.1", 316, "10.3.0.0/16"},
		{"::ffff:10.2.3.4", 32, "10.2.3.4/32"},
		{"10.4.1.1", 416, "10.4.0.0/16"},
		{"10.5.0.1", 0, ""},
		{"11.2.3.4", 0, ""},
		{"fd00:2:0:1::5", 128, "fd00:2:0:1::5/128"},
		{"fd00:2:0:1::6", 64, "fd00:2:0:1::/64"},
		{"fd00:2:0:2::6", 48, "fd00:2::/48"},
		{"fd00:2:0:1::5%eth0", 128, "fd00:2:0:1::5/128"},
		{"fd00:3::1", 0, ""},
		{"::a02:304", 0, ""}, // IPv4-compatible is IPv6, not 10.2.3.4
	}
	sn := s.Snapshot()
	checkPrefixLens(t, sn)
	for _, tt := range tests {
		got, ok := sn.LookupIP(netip.MustParseAddr(tt.addr))
		if ok != (tt.want != 0) || uint32(got.ID) != tt.want || (ok && got.Prefix != pfx(tt.prefix)) {
			t.Errorf("LookupIP(%s) = %v %s, %v; want %d %s", tt.addr, got.ID, got.Prefix, ok, tt.want, tt.prefix)
		}
	}
	if _, ok := sn.LookupIP(netip.Addr{}); ok {
		t.Error("LookupIP(zero Addr) found an entry")
	}

	// Deleting the /32 and the /24 falls back to the /16.
	sink.DeleteIP("c2", pfx("10.2.3.4/32"))
	sink.DeleteIP("c2", pfx("10.2.3.0/24"))
	sn = s.Snapshot()
	checkPrefixLens(t, sn)
	if got, ok := sn.LookupIP(netip.MustParseAddr("10.2.3.4")); !ok || got.ID != 16 {
		t.Errorf("LookupIP after deletes = %d, %v; want 16", got.ID, ok)
	}
	want := IPCacheRow{Prefix: pfx("10.2.0.0/16"), Cluster: "c2", ID: 16, Namespace: "ns", Pod: "pod"}
	got, _ := sn.LookupIP(netip.MustParseAddr("10.2.3.4"))
	if d := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{})); d != "" {
		t.Errorf("entry (-want +got):\n%s", d)
	}
}

func TestLookupIPAfterDeletes(t *testing.T) {
	s := newState(t)
	sink := s.RemoteSink()
	for _, p := range []string{"10.1.0.0/16", "10.1.1.0/24", "10.1.2.0/24", "10.1.1.1/32", "10.1.2.1/32"} {
		sink.UpsertIP("c2", pfx(p), ipEntry(uint32(pfx(p).Bits()), ""))
	}
	// The /24 and /32 lengths must survive the deletion of one of their
	// prefixes.
	sink.DeleteIP("c2", pfx("10.1.1.0/24"))
	sink.DeleteIP("c2", pfx("10.1.1.1/32"))
	sn := s.Snapshot()
	checkPrefixLens(t, sn)
	for addr, want := range map[string]uint32{"10.1.2.9": 24, "10.1.1.9": 16, "10.1.2.1": 32, "10.1.1.1": 16} {
		if got, ok := sn.LookupIP(netip.MustParseAddr(addr)); !ok || uint32(got.ID) != want {
			t.Errorf("LookupIP(%s) = /%d, %v; want /%d", addr, got.ID, ok, want)
		}
	}
}

func TestLookupIPOwnership(t *testing.T) {
	s := newState(t)
	sink := s.RemoteSink()
	sink.UpsertIP("c2", pfx("10.9.0.1/32"), ipEntry(2, ""))
	sink.UpsertIP("c3", pfx("10.9.0.1/32"), ipEntry(3, "")) // last writer wins
	sink.DeleteIP("c2", pfx("10.9.0.1/32"))                 // not c2's any more
	sn := s.Snapshot()
	if got, ok := sn.LookupIP(netip.MustParseAddr("10.9.0.1")); !ok || got.Cluster != "c3" || got.ID != 3 {
		t.Errorf("LookupIP = %+v, %v; want c3's entry", got, ok)
	}
	checkPrefixLens(t, sn)
}

func TestServiceCopiesAndNodes(t *testing.T) {
	s := newState(t)
	sink := s.RemoteSink()
	for _, c := range []string{"c3", "c1", "c2", "c10"} {
		sink.UpsertService(c, service(c, "ns", "web", "10.0.0.1"))
		sink.UpsertNode(c, node(c, "b"))
		sink.UpsertNode(c, node(c, "a"))
	}
	sink.UpsertService("c2", service("c2", "ns", "web2"))
	sink.UpsertService("c2", service("c2", "ns2", "web"))
	sink.UpsertService("c2", service("c2", "ns/web", "x"))
	sn := s.Snapshot()

	var clusters []string
	for _, r := range sn.ServiceCopies("ns", "web") {
		if r.Namespace != "ns" || r.Name != "web" || r.Service.Cluster != r.Cluster {
			t.Errorf("copy %+v is not ns/web of its cluster", r)
		}
		clusters = append(clusters, r.Cluster)
	}
	if d := cmp.Diff([]string{"c1", "c10", "c2", "c3"}, clusters); d != "" {
		t.Errorf("ServiceCopies(ns, web) clusters (-want +got):\n%s", d)
	}
	for _, q := range [][2]string{{"ns", "we"}, {"n", "sweb"}, {"", ""}, {"ns", "nope"}} {
		if got := sn.ServiceCopies(q[0], q[1]); got != nil {
			t.Errorf("ServiceCopies(%q, %q) = %d rows, want none", q[0], q[1], len(got))
		}
	}

	names := func(rows []NodeRow) []string {
		var out []string
		for _, r := range rows {
			out = append(out, r.Cluster+"/"+r.Name)
		}
		return out
	}
	if d := cmp.Diff([]string{"c1/a", "c1/b"}, names(sn.Nodes("c1"))); d != "" {
		t.Errorf("Nodes(c1) (-want +got):\n%s", d)
	}
	wantAll := []string{"c1/a", "c1/b", "c10/a", "c10/b", "c2/a", "c2/b", "c3/a", "c3/b"}
	if d := cmp.Diff(wantAll, names(sn.Nodes(""))); d != "" {
		t.Errorf("Nodes() (-want +got):\n%s", d)
	}
	if got := sn.Nodes("c9"); got != nil {
		t.Errorf("Nodes(c9) = %v, want none", names(got))
	}
}

func TestInitialized(t *testing.T) {
	s := newState(t)
	if !s.Initialized() {
		t.Error("Initialized() with no sources = false")
	}
	if s.Initialized("local") {
		t.Error("Initialized(local) before MarkInitialized")
	}
	s.MarkInitialized("local")
	s.MarkInitialized("") // logged and ignored
	ch := s.Changed()
	s.MarkInitialized("local") // idempotent: no commit
	if closed(ch) {
		t.Error("marking an initialized source again fired Changed")
	}
	tests := []struct {
		sources []string
		want    bool
	}{
		{[]string{"local"}, true},
		{[]string{"local", "remote/c2"}, false},
		{[]string{""}, false},
	}
	for _, tt := range tests {
		if got := s.Initialized(tt.sources...); got != tt.want {
			t.Errorf("Initialized(%q) = %v, want %v", tt.sources, got, tt.want)
		}
	}
	if n := s.Snapshot().Count(TableInitialized); n != 1 {
		t.Errorf("initialized rows = %d, want 1", n)
	}
}

func TestChanged(t *testing.T) {
	s := newState(t)
	sink := s.RemoteSink()
	sn := s.Snapshot()
	ch := s.Changed()
	if closed(ch) {
		t.Fatal("Changed closed before any write")
	}
	sink.DeleteNode("c2", "n1") // nothing to delete: no commit
	if closed(ch) {
		t.Fatal("a no-op write fired Changed")
	}
	sink.UpsertIP("c2", pfx("10.0.0.1/32"), ipEntry(7, ""))
	if !closed(ch) || !closed(sn.Changed()) {
		t.Fatal("a write did not fire Changed")
	}
	if _, ok := sn.LookupIP(netip.MustParseAddr("10.0.0.1")); ok {
		t.Error("an earlier snapshot sees a later write")
	}
	next := s.Snapshot()
	if closed(next.Changed()) {
		t.Error("Changed of a new snapshot is already closed")
	}
	sink.UpsertIP("c2", pfx("10.0.0.1/32"), ipEntry(7, "")) // same row: no commit
	if closed(next.Changed()) {
		t.Error("an unchanged upsert fired Changed")
	}
	sink.UpsertIdentity("c2", 7, labels(t, "k8s:app=a"))
	if !closed(next.Changed()) {
		t.Error("second write did not fire Changed")
	}
}
