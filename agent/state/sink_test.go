package state

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/remote"
	"github.com/clustermesh/clustermesh/identity"
)

func TestRemoteSink(t *testing.T) {
	// populate gives clusters c2 and c3 one row of each kind (c3's ip is a
	// /16 holding c2's /32).
	populate := func(t *testing.T, s remote.Sink) {
		for _, c := range []string{"c2", "c3"} {
			s.UpsertNode(c, node(c, "n1"))
			s.UpsertService(c, service(c, "ns", "web", "10.0.0.1"))
		}
		s.UpsertIdentity("c2", 65537, labels(t, "k8s:app=a"))
		s.UpsertIdentity("c3", 131073, labels(t, "k8s:app=b"))
		s.UpsertIP("c2", pfx("10.2.0.1/32"), ipEntry(65537, "192.168.0.2"))
		s.UpsertIP("c3", pfx("10.2.0.0/16"), ipEntry(131073, "192.168.0.3"))
	}
	all := []string{
		"identity c2 65537 k8s:app=a;",
		"identity c3 131073 k8s:app=b;",
		"ip c2 10.2.0.1/32 id=65537 host=192.168.0.2",
		"ip c3 10.2.0.0/16 id=131073 host=192.168.0.3",
		"node c2 n1 cidrs=[10.0.0.0/24]",
		"node c3 n1 cidrs=[10.0.0.0/24]",
		"service c2 ns/web backends=1",
		"service c3 ns/web backends=1",
	}
	c3Only := []string{all[1], all[3], all[5], all[7]}
	tests := []struct {
		name string
		ops  func(t *testing.T, s remote.Sink)
		want []string
	}{
		{"upserts", func(*testing.T, remote.Sink) {}, all},
		{"upserts replace", func(t *testing.T, s remote.Sink) {
			s.UpsertIdentity("c2", 65537, labels(t, "k8s:app=z"))
			s.UpsertIP("c2", pfx("10.2.0.1/32"), ipEntry(65538, "192.168.0.9"))
			n := node("c2", "n1")
			n.IPv4AllocCIDR = nil
			s.UpsertNode("c2", n)
			s.UpsertService("c2", service("c2", "ns", "web"))
		}, []string{
			"identity c2 65537 k8s:app=z;", all[1],
			"ip c2 10.2.0.1/32 id=65538 host=192.168.0.9", all[3],
			"node c2 n1 cidrs=[]", all[5],
			"service c2 ns/web backends=0", all[7],
		}},
		{"deletes", func(_ *testing.T, s remote.Sink) {
			s.DeleteIdentity("c2", 65537)
			s.DeleteIP("c2", pfx("10.2.0.1/32"))
			s.DeleteNode("c2", "n1")
			s.DeleteService("c2", "ns", "web")
		}, c3Only},
		{"deletes of missing rows", func(_ *testing.T, s remote.Sink) {
			s.DeleteIdentity("c2", 4242)
			s.DeleteIP("c2", pfx("10.9.9.9/32"))
			s.DeleteNode("c2", "n2")
			s.DeleteNode("", "")
			s.DeleteService("c2", "ns", "other")
			s.DeleteService("c2", "", "")
		}, all},
		{"a cluster cannot delete another's rows", func(_ *testing.T, s remote.Sink) {
			s.DeleteIdentity("c3", 65537)
			s.DeleteIP("c3", pfx("10.2.0.1/32"))
			s.DeleteNode("c3", "n2")
		}, all},
		{"drain c2 leaves c3", func(_ *testing.T, s remote.Sink) { s.Drain("c2") }, c3Only},
		{"drain twice and unknown", func(_ *testing.T, s remote.Sink) {
			s.Drain("c2")
			s.Drain("c2")
			s.Drain("c9")
			s.Drain("")
		}, c3Only},
		{"drain of a cluster name prefix", func(_ *testing.T, s remote.Sink) { s.Drain("c") }, all},
		{"drain everything", func(_ *testing.T, s remote.Sink) { s.Drain("c2"); s.Drain("c3") }, nil},
		{"invalid writes are dropped", func(t *testing.T, s remote.Sink) {
			s.UpsertNode("", node("", "n9"))
			s.UpsertNode("c2", node("c2", ""))
			s.UpsertIdentity("", 7, labels(t, "k8s:app=x"))
			s.UpsertIP("", pfx("10.9.0.0/16"), ipEntry(7, ""))
			s.UpsertService("c2", service("c2", "", "web"))
		}, all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newState(t)
			populate(t, st.RemoteSink())
			tt.ops(t, st.RemoteSink())
			sn := st.Snapshot()
			if d := cmp.Diff(tt.want, dump(t, sn)); d != "" {
				t.Errorf("rows (-want +got):\n%s", d)
			}
			checkPrefixLens(t, sn)
		})
	}
}

func TestSinkDrainIsOneTransaction(t *testing.T) {
	s := newState(t)
	sink := s.RemoteSink()
	for i := range 10 {
		sink.UpsertIP("c2", netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 2, 0, byte(i)}), 32), ipEntry(uint32(65537+i), ""))
		sink.UpsertNode("c2", node("c2", string(rune('a'+i))))
	}
	before := s.Snapshot()
	sink.Drain("c2")
	if !closed(before.Changed()) {
		t.Fatal("drain did not fire Changed")
	}
	// One commit: a snapshot taken right after the drain's notification
	// sees nothing of c2, and the old snapshot still sees all of it.
	if got := s.Snapshot().Count(TableNodes); got != 0 {
		t.Errorf("nodes after drain = %d, want 0", got)
	}
	if got := before.Count(TableNodes); got != 10 {
		t.Errorf("nodes in the earlier snapshot = %d, want 10", got)
	}
}

func TestUpdateRollsBack(t *testing.T) {
	s := newState(t)
	ch := s.Changed()
	errBoom := errors.New("boom")
	err := s.Update(func(w *WriteTxn) error {
		if err := w.UpsertNode("c2", node("c2", "n1")); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update = %v, want %v", err, errBoom)
	}
	if n := s.Snapshot().Count(TableNodes); n != 0 {
		t.Errorf("nodes after a failed update = %d, want 0", n)
	}
	if closed(ch) {
		t.Error("a failed update fired Changed")
	}
	err = s.Update(func(w *WriteTxn) error { return w.UpsertIP(IPCacheRow{Cluster: "c2"}) })
	if err == nil {
		t.Error("UpsertIP of the zero prefix succeeded")
	}
}

func TestIdentityAndCount(t *testing.T) {
	s := newState(t)
	sink := s.RemoteSink()
	ls := labels(t, "k8s:app=a", "k8s:io.cilium.k8s.policy.cluster=c2")
	sink.UpsertIdentity("c2", 65537, ls)
	got, ok := s.Snapshot().Identity(65537)
	want := IdentityRow{Cluster: "c2", ID: 65537, Labels: ls, LabelsKey: ls.SortedKVStoreString()}
	if d := cmp.Diff(want, got); !ok || d != "" {
		t.Errorf("Identity(65537) = _, %v (-want +got):\n%s", ok, d)
	}
	if _, ok := s.Snapshot().Identity(identity.NumericIdentity(65538)); ok {
		t.Error("Identity(65538) found")
	}
	sn := s.Snapshot()
	counts := map[string]int{}
	for _, table := range []string{TableIdentities, TableIPCache, TableNodes, TableServices, TableInitialized, tablePrefixLens, "nope"} {
		counts[table] = sn.Count(table)
	}
	wantCounts := map[string]int{TableIdentities: 1, TableIPCache: 0, TableNodes: 0, TableServices: 0, TableInitialized: 0, tablePrefixLens: 0, "nope": 0}
	if d := cmp.Diff(wantCounts, counts); d != "" {
		t.Errorf("counts (-want +got):\n%s", d)
	}
}
