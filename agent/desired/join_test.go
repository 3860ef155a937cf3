package desired

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/identity"
)

// checkJoin checks that join's incremental form agrees with its full one:
// for each seed, rounds of 1-k random writes (write), applied through a
// subscription to tables, a few commits at a time, with Keys and At,
// always give what All computes from scratch. The writes must collide (few
// names and addresses) so that every precedence rule of the join is
// exercised.
func checkJoin[K comparable, V any](t *testing.T, join Join[K, V], tables []string, seeds uint64, rounds, k int, write func(*state.WriteTxn, *rand.Rand) error) {
	t.Helper()
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(seed, 7))
		st, err := state.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		sub := st.Subscribe(tables...)
		applied := map[K]V{}
		for round := range rounds {
			if err := st.Update(func(w *state.WriteTxn) error {
				for range 1 + rng.IntN(k) {
					if err := write(w, rng); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if rng.IntN(3) > 0 && round != rounds-1 {
				continue // let changes pile up over several commits
			}
			changes, sn, lost := sub.Next()
			keys := map[K]struct{}{}
			if lost {
				for k := range applied {
					keys[k] = struct{}{}
				}
				for k := range join.All(sn) {
					keys[k] = struct{}{}
				}
			}
			for _, c := range changes {
				join.Keys(sn, c, keys)
			}
			for k := range keys {
				if v, ok := join.At(sn, k); ok {
					applied[k] = v
				} else {
					delete(applied, k)
				}
			}
			if diff := cmp.Diff(join.All(sn), applied, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Fatalf("seed %d round %d: incremental differs from the join (-join +incremental):\n%s", seed, round, diff)
			}
		}
		sub.Close()
	}
}

// The incremental CIDR identities agree with the full table.
func TestCIDRIdentityAtMatchesTheJoin(t *testing.T) {
	checkJoin(t, cidrsJoin{}, []string{state.TableCIDRIdentities}, 5, 40, 3, func(w *state.WriteTxn, rng *rand.Rand) error {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(rng.IntN(3)), 0, 0}), 16)
		if rng.IntN(3) == 0 {
			return w.DeleteCIDRIdentity(p)
		}
		return w.UpsertCIDRIdentity(p, identity.NumericIdentity(1<<24+rng.IntN(3)))
	})
}
