package state

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/clustermesh/clustermesh/identity"
)

// The identities table, held in blocks, behaves as a table of rows keyed
// by identity, whatever the order of upserts, deletes and drains, one or
// several a commit, across block boundaries: Identity, IdentityRow,
// Identities (in the order of the identities), IdentityRows and Count
// agree with a reference map; an unchanged row is the same pointer in the
// next snapshot; a subscriber's IdentityChanges name exactly the
// identities whose row changed; an emptied block is removed.
func TestIdentityBlocks(t *testing.T) {
	s := newState(t)
	sub := s.Subscribe(TableIdentities)
	defer sub.Close()
	<-sub.Changed()
	sub.Next()
	rng := rand.New(rand.NewPCG(5, 6))
	ids := []identity.NumericIdentity{65536, 65537, 65599, 65600, 65601, 65663, 65664, 131072, 131073, 200000}
	clusters := []string{"c2", "c3"}
	labels := func(n int) identity.Labels {
		return identity.NewLabels(identity.Label{Source: "k8s", Key: "app", Value: fmt.Sprint("a", n%3)})
	}
	type ref struct {
		cluster string
		app     int
	}
	want := map[identity.NumericIdentity]ref{}
	prev := map[identity.NumericIdentity]*IdentityRow{}
	for round := range 400 {
		// touched: an operation of the round may have rewritten the row;
		// changed: the round's result differs.
		touched, before := map[identity.NumericIdentity]bool{}, maps.Clone(want)
		err := s.Update(func(w *WriteTxn) error {
			for range 1 + rng.IntN(4) {
				id, c := ids[rng.IntN(len(ids))], clusters[rng.IntN(2)]
				switch rng.IntN(6) {
				case 0, 1, 2:
					n := rng.IntN(3)
					touched[id] = true
					want[id] = ref{c, n}
					if err := w.UpsertIdentity(c, id, labels(n)); err != nil {
						return err
					}
				case 3, 4:
					if old, ok := want[id]; ok && old.cluster == c {
						delete(want, id)
						touched[id] = true
					}
					if err := w.DeleteIdentity(c, id); err != nil {
						return err
					}
				case 5:
					for id, r := range want {
						if r.cluster == c {
							delete(want, id)
							touched[id] = true
						}
					}
					if err := w.Drain(c); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		sn := s.Snapshot()
		if got := sn.Count(TableIdentities); got != len(want) {
			t.Fatalf("round %d: count %d, want %d", round, got, len(want))
		}
		var order []identity.NumericIdentity
		for _, r := range sn.Identities() {
			order = append(order, r.ID)
		}
		if w := slices.Sorted(maps.Keys(want)); !slices.Equal(order, w) {
			t.Fatalf("round %d: identities %v, want %v", round, order, w)
		}
		now := map[identity.NumericIdentity]*IdentityRow{}
		sn.IdentityRows(func(r *IdentityRow) { now[r.ID] = r })
		for _, id := range ids {
			r, ok := sn.Identity(id)
			w, wok := want[id]
			if ok != wok || (ok && (r.Cluster != w.cluster || !r.Labels.Equal(labels(w.app)) || r.ID != id)) {
				t.Fatalf("round %d: Identity(%d) = %+v, %v; want %+v, %v", round, id, r, ok, w, wok)
			}
			if p := sn.IdentityRow(id); p != now[id] {
				t.Fatalf("round %d: IdentityRow(%d) is not the row IdentityRows gives", round, id)
			}
			if !touched[id] && now[id] != prev[id] {
				t.Fatalf("round %d: identity %d unchanged, but its row is a new pointer", round, id)
			}
		}
		prev = now
		got := map[identity.NumericIdentity]bool{}
		if changes, _, lost := sub.Next(); !lost {
			for _, c := range changes {
				for _, id := range IdentityChanges(c) {
					got[id] = true
				}
			}
		}
		for _, id := range ids {
			if before[id] != want[id] && !got[id] {
				t.Fatalf("round %d: identity %d changed, not in the subscriber's changes %v", round, id, got)
			}
		}
		for id := range got {
			if !touched[id] {
				t.Fatalf("round %d: identity %d reported changed, it did not (changes %v)", round, id, got)
			}
		}
	}
	if err := s.Update(func(w *WriteTxn) error {
		for _, c := range clusters {
			if err := w.Drain(c); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	it, err := s.Snapshot().Txn().Get(TableIdentities, IndexID)
	if err != nil {
		t.Fatal(err)
	}
	if raw := it.Next(); raw != nil {
		t.Fatalf("an emptied identities table keeps %T %+v", raw, raw)
	}
}
