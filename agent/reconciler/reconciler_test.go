package reconciler_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/dptest"
)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	dptest.Eventually(t, what, cond)
}

func held(t *testing.T, table *datapath.MemTable[string, int]) map[string]int {
	t.Helper()
	return dptest.Held(t, datapath.Table[string, int](table))
}

// What the kernel holds at start (pinned maps after an agent restart) stays
// until the sources are initialized; then only what is not desired goes.
// The same check runs against the eBPF tables (agent/datapath/bpfdp).
func TestAdoptsAndPrunesOnlyWhenInitialized(t *testing.T) {
	for _, incremental := range []bool{false, true} {
		t.Run(mode(incremental), func(t *testing.T) {
			table := datapath.NewMemTable[string, int]()
			dptest.Reconcile(t, dptest.ReconcileCase[string, int]{
				Table: table, Live: "live", Stale: "stale", New: "new", V1: 1, V2: 2, Incremental: incremental,
			})
			// live and stale by the test; new, then live changed, by the
			// reconciler: an equal value was never written again.
			if u, d := table.Ops(); u != 4 || d != 2 {
				t.Fatalf("effective updates, deletes = %d, %d; want 4, 2", u, d)
			}
		})
	}
}

func mode(incremental bool) string {
	if incremental {
		return "incremental"
	}
	return "full"
}

// A failing object is retried with backoff until it succeeds; the others
// are not held back.
func TestPerObjectRetry(t *testing.T) {
	for _, incremental := range []bool{false, true} {
		t.Run(mode(incremental), func(t *testing.T) { testPerObjectRetry(t, incremental) })
	}
}

// failingBad returns a table whose writes of "bad" fail ("map full") until
// fix is called.
func failingBad() (table *datapath.MemTable[string, int], fix func()) {
	table = datapath.NewMemTable[string, int]()
	var mu sync.Mutex
	broken := true
	table.FailWith(func(k string) error {
		mu.Lock()
		defer mu.Unlock()
		if k == "bad" && broken {
			return errors.New("map full")
		}
		return nil
	})
	return table, func() { mu.Lock(); broken = false; mu.Unlock() }
}

func testPerObjectRetry(t *testing.T, incremental bool) {
	table, fix := failingBad()
	src := dptest.NewSource[string, int]()
	r := dptest.StartMode(t, datapath.Table[string, int](table), src, incremental)
	src.Set(func(m map[string]int) { m["good"] = 1; m["bad"] = 1 }, true)
	eventually(t, "good applied, bad failing", func() bool {
		st := r.Status()
		return held(t, table)["good"] == 1 && st.Failing == 1 && st.LastError != ""
	})
	fix()
	eventually(t, "bad applied after retries", func() bool { return held(t, table)["bad"] == 1 && r.Status().Failing == 0 })

	// Changing a value and removing one reach the table.
	src.Set(func(m map[string]int) { m["good"] = 2; delete(m, "bad") }, true)
	eventually(t, "update and delete", func() bool { return cmp.Equal(map[string]int{"good": 2}, held(t, table)) })
}

// With TrackObjects, each key's status says what the table holds and why
// it is not there yet, and Watch wakes a waiter after each pass: the CNI
// ADD waits on it instead of polling the kernel.
func TestObjectStatus(t *testing.T) {
	for _, incremental := range []bool{false, true} {
		t.Run(mode(incremental), func(t *testing.T) {
			table, fix := failingBad()
			src := dptest.NewSource[string, int]()
			r := dptest.StartWith(t, datapath.Table[string, int](table), src, dptest.Options{Incremental: incremental, TrackObjects: true})
			watch := r.Watch()
			src.Set(func(m map[string]int) { m["good"] = 1; m["bad"] = 2 }, true)
			<-watch // a pass ended
			waitFor := func(what string, cond func() bool) {
				t.Helper()
				deadline := time.After(10 * time.Second)
				for !cond() {
					select {
					case <-r.Watch():
					case <-deadline:
						t.Fatalf("timed out waiting for %s: good %+v, bad %+v", what, r.Object("good"), r.Object("bad"))
					}
				}
			}
			waitFor("good held, bad failing", func() bool {
				g, b := r.Object("good"), r.Object("bad")
				return g.Held && g.Applied == 1 && !b.Held && b.Err != ""
			})
			if b := r.Object("bad"); !strings.Contains(b.Err, "map full") {
				t.Fatalf("bad's error %q does not say why", b.Err)
			}
			fix()
			waitFor("bad held after a retry", func() bool { b := r.Object("bad"); return b.Held && b.Applied == 2 && b.Err == "" })
			src.Set(func(m map[string]int) { delete(m, "good") }, true)
			waitFor("good gone", func() bool { return !r.Object("good").Held })
		})
	}
}

// Sources that stop being initialized (a peer added and not yet synced)
// keep what is no longer desired; once they are initialized again it is
// pruned at once, not at the next resync.
func TestPrunesWhenInitializedAgain(t *testing.T) {
	for _, incremental := range []bool{false, true} {
		t.Run(mode(incremental), func(t *testing.T) {
			table := datapath.NewMemTable[string, int]()
			src := dptest.NewSource[string, int]()
			dptest.StartMode(t, datapath.Table[string, int](table), src, incremental)
			src.Set(func(m map[string]int) { m["a"] = 1; m["b"] = 1 }, true)
			eventually(t, "applied", func() bool { return cmp.Equal(map[string]int{"a": 1, "b": 1}, held(t, table)) })
			src.Set(func(m map[string]int) { delete(m, "a") }, false)
			src.Set(func(m map[string]int) { m["c"] = 1 }, false)
			eventually(t, "c applied", func() bool { return held(t, table)["c"] == 1 })
			if _, ok := held(t, table)["a"]; !ok {
				t.Fatal("pruned while the sources were not initialized")
			}
			src.Set(func(map[string]int) {}, true)
			eventually(t, "a pruned once initialized again", func() bool {
				return cmp.Equal(map[string]int{"b": 1, "c": 1}, held(t, table))
			})
		})
	}
}
