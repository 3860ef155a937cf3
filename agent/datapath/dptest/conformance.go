package dptest

import (
	"io"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/datapath"
)

// Impl is a datapath implementation under test.
type Impl struct {
	// NewKernel returns fresh, empty kernel state and a function that
	// opens a datapath over it. The test closes a datapath (if it is an
	// io.Closer) before it opens the next one over the same state: that
	// is an agent restart.
	NewKernel func(t *testing.T) (open func(t *testing.T) datapath.Datapath)
	// VolatilePeers says the Peers table does not survive a restart (it
	// has no kernel state yet).
	VolatilePeers bool
}

// Run checks every table of the implementation against the Table contract:
// Delete of an absent key and Update of an equal value succeed, List
// returns exactly what was written (every field, nil and empty slices
// told apart), changes and deletes show, and a restarted datapath lists the
// same and carries on from it.
func Run(t *testing.T, impl Impl) {
	t.Helper()
	t.Run("IPCache", func(t *testing.T) { testTable(t, impl, ipcacheCase()) })
	t.Run("Services", func(t *testing.T) { testTable(t, impl, servicesCase()) })
	t.Run("Policies", func(t *testing.T) { testTable(t, impl, policiesCase()) })
	t.Run("Peers", func(t *testing.T) {
		c := peersCase()
		c.volatile = impl.VolatilePeers
		testTable(t, impl, c)
	})
}

// tableCase is a table and sample objects: k1 gets v1, then v2, then v1
// again; k2 gets v3.
type tableCase[K comparable, V any] struct {
	table      func(datapath.Datapath) datapath.Table[K, V]
	k1, k2     K
	v1, v2, v3 V
	volatile   bool // the table is empty after a restart
}

// CmpOptions compare the datapath's values in tests (netip types by ==).
func CmpOptions() cmp.Options {
	return cmp.Options{
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	}
}

// Restart closes dp if it is an io.Closer and opens a new datapath.
func Restart(t *testing.T, dp datapath.Datapath, open func(t *testing.T) datapath.Datapath) datapath.Datapath {
	t.Helper()
	if c, ok := dp.(io.Closer); ok {
		if err := c.Close(); err != nil {
			t.Fatalf("close datapath for a restart: %v", err)
		}
	}
	return open(t)
}

func testTable[K comparable, V any](t *testing.T, impl Impl, c tableCase[K, V]) {
	open := impl.NewKernel(t)
	dp := open(t)
	tbl := c.table(dp)
	ctx := t.Context()
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	expect := func(what string, want map[K]V) {
		t.Helper()
		got, err := tbl.List(ctx)
		step("List "+what, err)
		if diff := cmp.Diff(want, got, CmpOptions()); diff != "" {
			t.Fatalf("List %s (-want +got):\n%s", what, diff)
		}
	}

	expect("of a new datapath", map[K]V{})
	step("Delete of an absent key", tbl.Delete(ctx, c.k1))
	step("Update", tbl.Update(ctx, c.k1, c.v1))
	step("Update of an equal value", tbl.Update(ctx, c.k1, c.v1))
	step("Update of a second key", tbl.Update(ctx, c.k2, c.v3))
	expect("after updates", map[K]V{c.k1: c.v1, c.k2: c.v3})
	step("Update to another value", tbl.Update(ctx, c.k1, c.v2))
	expect("after a change", map[K]V{c.k1: c.v2, c.k2: c.v3})
	step("Update back", tbl.Update(ctx, c.k1, c.v1))
	step("Delete", tbl.Delete(ctx, c.k2))
	step("Delete again", tbl.Delete(ctx, c.k2))
	expect("after a delete", map[K]V{c.k1: c.v1})

	dp = Restart(t, dp, open)
	tbl = c.table(dp)
	want := map[K]V{c.k1: c.v1}
	if c.volatile {
		want = map[K]V{}
	}
	expect("after a restart", want)
	step("Update of an equal value after a restart", tbl.Update(ctx, c.k1, c.v1))
	step("Update after a restart", tbl.Update(ctx, c.k2, c.v3))
	expect("after updates after a restart", map[K]V{c.k1: c.v1, c.k2: c.v3})
	step("Delete after a restart", tbl.Delete(ctx, c.k1))
	step("Delete after a restart", tbl.Delete(ctx, c.k2))
	expect("after deletes after a restart", map[K]V{})

	dp = Restart(t, dp, open)
	tbl = c.table(dp)
	expect("after deletes and another restart", map[K]V{})
}
