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
	// Kept says what the implementation keeps of each table's values.
	Kept Kept
	// NewAttachKernel, when set, runs the Attachments table too: it is
	// NewKernel with two host interfaces the datapath can attach to.
	NewAttachKernel func(t *testing.T) (open func(t *testing.T) datapath.Datapath, ifs [2]Interface)
}

// Interface is a host-side interface of an endpoint.
type Interface struct {
	Index int
	Name  string
}

// Kept is, per table, what an implementation keeps of a value: List returns
// Kept.X(v) for the value v an Update wrote. A nil function keeps the whole
// value (the in-memory datapath).
type Kept struct {
	IPCache     func(datapath.IPCacheEntry) datapath.IPCacheEntry
	Services    func(datapath.Service) datapath.Service
	Policies    func(datapath.EndpointPolicy) datapath.EndpointPolicy
	Peers       func(datapath.Peer) datapath.Peer
	Attachments func(datapath.Attachment) datapath.Attachment
}

// Run checks every table of the implementation against the Table contract:
// Delete of an absent key and Update of an equal value succeed, List
// returns exactly the keys written, each with what the implementation keeps
// of its value (Impl.Kept; nil and empty slices told apart), changes and
// deletes show, and a restarted datapath lists the same and carries on from
// it.
func Run(t *testing.T, impl Impl) {
	t.Helper()
	t.Run("IPCache", func(t *testing.T) { testTable(t, impl.NewKernel, ipcacheCase(), impl.Kept.IPCache) })
	t.Run("Services", func(t *testing.T) { testTable(t, impl.NewKernel, servicesCase(), impl.Kept.Services) })
	t.Run("Policies", func(t *testing.T) { testTable(t, impl.NewKernel, policiesCase(), impl.Kept.Policies) })
	t.Run("CIDRIdentities", func(t *testing.T) { testTable(t, impl.NewKernel, cidrsCase(), nil) })
	t.Run("Peers", func(t *testing.T) {
		c := peersCase()
		c.volatile = impl.VolatilePeers
		testTable(t, impl.NewKernel, c, impl.Kept.Peers)
	})
	if impl.NewAttachKernel != nil {
		t.Run("Attachments", func(t *testing.T) {
			var ifs [2]Interface
			newKernel := func(t *testing.T) func(*testing.T) datapath.Datapath {
				var open func(*testing.T) datapath.Datapath
				open, ifs = impl.NewAttachKernel(t)
				return open
			}
			testTable(t, newKernel, attachmentsCase(&ifs), impl.Kept.Attachments)
		})
	}
}

// tableCase is a table and sample objects: k1 gets v1, then v2, then v1
// again; k2 gets v3. samples, when set, sets them once the kernel exists.
type tableCase[K comparable, V any] struct {
	table      func(datapath.Datapath) datapath.Table[K, V]
	k1, k2     K
	v1, v2, v3 V
	samples    func(c *tableCase[K, V])
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

// KeptAll returns the values of m as kept (nil kept: the whole values).
func KeptAll[K comparable, V any](m map[K]V, kept func(V) V) map[K]V {
	if kept == nil {
		return m
	}
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = kept(v)
	}
	return out
}

func testTable[K comparable, V any](t *testing.T, newKernel func(*testing.T) func(*testing.T) datapath.Datapath, c tableCase[K, V], kept func(V) V) {
	open := newKernel(t)
	if c.samples != nil {
		c.samples(&c)
	}
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
		if diff := cmp.Diff(KeptAll(want, kept), got, CmpOptions()); diff != "" {
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
