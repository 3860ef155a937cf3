package server

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/identity"
)

// BenchmarkIPCacheChange measures one remote pod's change (its identity)
// from the state write to the datapath table's Update, with 1k and 100k
// remote entries present, for the incremental ipcache reconciler and, as
// the baseline measured in the same run, the full-rebuild one it
// replaced. It prints p50/p99 per size and mode (1000 changes each for the
// incremental reconciler, 20 for the baseline), and the ratios 100k/1k.
//
//	go test -run '^$' -bench BenchmarkIPCacheChange -benchtime=1x ./agent/server
func BenchmarkIPCacheChange(b *testing.B) {
	results := map[string]time.Duration{}
	for _, incremental := range []bool{true, false} {
		for _, n := range []int{1_000, 100_000} {
			name := fmt.Sprintf("%s/%dk", map[bool]string{true: "incremental", false: "full"}[incremental], n/1000)
			b.Run(name, func(b *testing.B) {
				changes := 1000
				if !incremental {
					changes = 20 // the baseline rebuilds everything on each change
				}
				var lat []time.Duration
				for range b.N {
					lat = append(lat, ipcacheChangeLatencies(b, n, changes, incremental)...)
				}
				slices.Sort(lat)
				p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
				results[name+"/p50"], results[name+"/p99"] = p50, p99
				b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
				b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
			})
		}
	}
	for _, m := range []string{"incremental", "full"} {
		for _, q := range []string{"p50", "p99"} {
			small, large := results[m+"/1k/"+q], results[m+"/100k/"+q]
			if small > 0 {
				b.Logf("%s %s: 1k %v, 100k %v, ratio 100k/1k %.2f", m, q, small, large, float64(large)/float64(small))
			}
		}
	}
	if inc, full := results["incremental/100k/p50"], results["full/100k/p50"]; inc > 0 {
		b.Logf("at 100k entries, p50 incremental/full %.4f", float64(inc)/float64(full))
	}
}

// notifyTable is an in-memory table that reports each Update of a watched
// key.
type notifyTable struct {
	*datapath.MemTable[netip.Prefix, datapath.IPCacheEntry]
	mu    sync.Mutex
	watch netip.Prefix
	seen  chan datapath.IPCacheEntry
}

func (t *notifyTable) Update(ctx context.Context, k netip.Prefix, v datapath.IPCacheEntry) error {
	err := t.MemTable.Update(ctx, k, v)
	t.mu.Lock()
	w := t.watch
	t.mu.Unlock()
	if k == w {
		t.seen <- v
	}
	return err
}

func ipcacheChangeLatencies(b *testing.B, n, changes int, incremental bool) []time.Duration {
	b.Helper()
	st, err := state.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	prefix := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	host := netip.MustParseAddr("192.168.2.10")
	for lo := 0; lo < n; lo += 5000 {
		if err := st.Update(func(w *state.WriteTxn) error {
			for i := lo; i < min(lo+5000, n); i++ {
				if err := w.UpsertIP(state.IPCacheRow{Prefix: prefix(i), Cluster: "cluster2", ID: 131073, HostIP: host}); err != nil {
					return err
				}
			}
			return w.MarkInitialized("bench")
		}); err != nil {
			b.Fatal(err)
		}
	}
	table := &notifyTable{MemTable: datapath.NewMemTable[netip.Prefix, datapath.IPCacheEntry](), seen: make(chan datapath.IPCacheEntry, 1)}
	cfg := reconciler.Config[netip.Prefix, datapath.IPCacheEntry]{
		Name: "ipcache", Table: table, Initialized: func() bool { return true }, Resync: time.Hour,
	}
	if incremental {
		cfg.Incremental = newIPCacheSource(st, "cluster1", "n1")
	} else {
		cfg.Changed = st.Changed
		cfg.Desired = func() map[netip.Prefix]datapath.IPCacheEntry { return desiredIPCache(st.Snapshot(), "cluster1", "n1") }
	}
	r := reconciler.New(cfg)
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for r.Status().Applied < n {
		time.Sleep(time.Millisecond)
	}
	out := make([]time.Duration, 0, changes)
	for i := range changes {
		p := prefix((i * 7919) % n)
		id := identity.NumericIdentity(131074 + i%2)
		table.mu.Lock()
		table.watch = p
		table.mu.Unlock()
		start := time.Now()
		if err := st.Update(func(w *state.WriteTxn) error {
			return w.UpsertIP(state.IPCacheRow{Prefix: p, Cluster: "cluster2", ID: id, HostIP: host})
		}); err != nil {
			b.Fatal(err)
		}
		for v := range table.seen {
			if v.Identity == id {
				break
			}
		}
		out = append(out, time.Since(start))
	}
	return out
}
