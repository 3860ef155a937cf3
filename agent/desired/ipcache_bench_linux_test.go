package desired

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/bpfdp"
	"github.com/clustermesh/clustermesh/agent/reconciler"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/internal/testing/testutil"
)

// BenchmarkIPCacheChange measures one remote pod's change (its identity)
// from the state write to the kernel ipcache's update (the eBPF datapath,
// loaded for the benchmark), with 1k and 100k
// remote entries present, for the incremental ipcache reconciler and, as
// the baseline measured in the same run, the full-rebuild one it
// replaced. It prints p50/p99 per size and mode (2000 changes each for the
// incremental reconciler, 20 for the baseline, after 100 unmeasured
// changes), and the ratios 100k/1k; and, as a second baseline, the kernel
// map's own update at each size (the same updates written directly), to
// tell the agent's share from the kernel's.
//
//	go test -run '^$' -bench BenchmarkIPCacheChange -benchtime=1x ./agent/desired
func BenchmarkIPCacheChange(b *testing.B) {
	results := map[string]time.Duration{}
	for _, incremental := range []bool{true, false} {
		for _, n := range []int{1_000, 100_000} {
			name := fmt.Sprintf("%s/%dk", map[bool]string{true: "incremental", false: "full"}[incremental], n/1000)
			b.Run(name, func(b *testing.B) {
				changes := 2000
				if !incremental {
					changes = 20 // the baseline rebuilds everything on each change
				}
				var lat, kern []time.Duration
				for range b.N {
					a, k := ipcacheChangeLatencies(b, n, changes, incremental)
					lat, kern = append(lat, a...), append(kern, k...)
				}
				slices.Sort(lat)
				slices.Sort(kern)
				p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
				results[name+"/p50"], results[name+"/p99"] = p50, p99
				results[name+"/kernel-p50"] = kern[len(kern)/2]
				b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
				b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
				b.ReportMetric(float64(kern[len(kern)/2].Nanoseconds())/1e3, "kernel-update-p50-µs")
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
	ks, kl := results["incremental/1k/kernel-p50"], results["incremental/100k/kernel-p50"]
	if ks > 0 {
		as, al := results["incremental/1k/p50"]-ks, results["incremental/100k/p50"]-kl
		b.Logf("the kernel map's own update p50: 1k %v, 100k %v, ratio %.2f; the agent's path without it: 1k %v, 100k %v, ratio %.2f",
			ks, kl, float64(kl)/float64(ks), as, al, float64(al)/float64(as))
	}
	if inc, full := results["incremental/100k/p50"], results["full/100k/p50"]; inc > 0 {
		b.Logf("at 100k entries, p50 incremental/full %.4f", float64(inc)/float64(full))
	}
}

// notifyTable is a table that reports each Update of a watched key.
type notifyTable struct {
	datapath.Table[netip.Prefix, datapath.IPCacheEntry]
	mu    sync.Mutex
	watch netip.Prefix
	seen  chan datapath.IPCacheEntry
}

func (t *notifyTable) Update(ctx context.Context, k netip.Prefix, v datapath.IPCacheEntry) error {
	err := t.Table.Update(ctx, k, v)
	t.mu.Lock()
	w := t.watch
	t.mu.Unlock()
	if k == w {
		t.seen <- v
	}
	return err
}

// ipcacheChangeLatencies returns the latencies of changes through the
// agent's path, then of the kernel map's update alone.
func ipcacheChangeLatencies(b *testing.B, n, changes int, incremental bool) (agent, kernel []time.Duration) {
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
	table := &notifyTable{Table: kernelIPCache(b), seen: make(chan datapath.IPCacheEntry, 1)}
	cfg := reconciler.Config[netip.Prefix, datapath.IPCacheEntry]{
		Name: "ipcache", Table: table, Initialized: func() bool { return true }, Resync: time.Hour,
	}
	if incremental {
		cfg.Incremental = NewIPCacheSource(st, "cluster1", "n1")
	} else {
		cfg.Changed = st.Changed
		cfg.Desired = func() map[netip.Prefix]datapath.IPCacheEntry { return IPCache(st.Snapshot(), "cluster1", "n1") }
	}
	r := reconciler.New(cfg)
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testutil.Eventually(b, time.Minute, fmt.Sprintf("the reconciler applying the %d initial entries", n), func() bool {
		return r.Status().Applied >= n
	})
	runtime.GC() // the setup's garbage is not the change's cost
	const warmup = 100
	out := make([]time.Duration, 0, changes)
	for i := range warmup + changes {
		p := prefix((i * 7919) % n)
		// Each visit of a prefix changes its identity (the visits of one
		// prefix are n changes apart).
		id := identity.NumericIdentity(131074 + (i/n)%2)
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
		if i >= warmup {
			out = append(out, time.Since(start))
		}
	}
	// The kernel's part: the same updates of the same map written directly.
	kernel = make([]time.Duration, 0, changes)
	for i := range changes {
		p := prefix((i * 7919) % n)
		v := datapath.IPCacheEntry{Identity: identity.NumericIdentity(131076 + i%2), HostIP: host, Cluster: "cluster2"}
		start := time.Now()
		if err := table.Table.Update(b.Context(), p, v); err != nil {
			b.Fatal(err)
		}
		kernel = append(kernel, time.Since(start))
	}
	return out, kernel
}

// kernelIPCache returns the ipcache table of an eBPF datapath loaded into
// the kernel, pinned on a bpffs of its own.
func kernelIPCache(b *testing.B) datapath.Table[netip.Prefix, datapath.IPCacheEntry] {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Fatal("privileged benchmark: needs root (CAP_BPF and CAP_SYS_ADMIN to load the datapath and mount bpffs)")
	}
	dir := b.TempDir()
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		b.Fatalf("mount bpffs at %s: %v", dir, err)
	}
	b.Cleanup(func() { _ = unix.Unmount(dir, 0) })
	dp, err := bpfdp.New(b.Context(), bpf.Options{PinDir: filepath.Join(dir, "clustermesh")}, "")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = dp.Close() })
	return dp.IPCache()
}
