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
// loaded for the benchmark), with 1k and with 100k remote entries present,
// for the incremental reconciler and, as the baseline, the full-rebuild one
// it replaced. The two sizes run side by side (two states, two reconcilers,
// two kernel maps in one process) and their changes alternate, so that the
// machine's drift (other load, frequency, the process's heap) weighs on
// both alike: the ratio 100k/1k compares changes made microseconds apart.
// It prints p50/p99 per size and mode (2000 changes each for the
// incremental reconciler, 20 for the baseline, after 100 unmeasured ones)
// and the ratios; and, as a second baseline, the kernel map's own update
// at each size (the same updates written directly, also alternating), to
// tell the agent's share from the kernel's.
//
//	go test -run '^$' -bench BenchmarkIPCacheChange -benchtime=1x ./agent/desired
func BenchmarkIPCacheChange(b *testing.B) {
	results := map[string]time.Duration{}
	for _, incremental := range []bool{true, false} {
		mode := map[bool]string{true: "incremental", false: "full"}[incremental]
		b.Run(mode, func(b *testing.B) {
			changes := 2000
			if !incremental {
				changes = 20 // the baseline rebuilds everything on each change
			}
			sizes := []int{1_000, 100_000}
			rigs := []*ipcacheRig{newIPCacheRig(b, sizes[0], incremental), newIPCacheRig(b, sizes[1], incremental)}
			runtime.GC() // the setup's garbage is not the changes' cost
			lat := make([][]time.Duration, 2)
			kern := make([][]time.Duration, 2)
			const warmup = 100
			for range b.N {
				for i := range warmup + changes {
					for j := range 2 {
						r := (i + j) % 2 // which size goes first alternates
						d := rigs[r].change(b, i)
						if i >= warmup {
							lat[r] = append(lat[r], d)
						}
					}
				}
				for i := range changes {
					for j := range 2 {
						r := (i + j) % 2
						kern[r] = append(kern[r], rigs[r].kernelUpdate(b, i))
					}
				}
			}
			for r, n := range sizes {
				slices.Sort(lat[r])
				slices.Sort(kern[r])
				name := fmt.Sprintf("%s/%dk", mode, n/1000)
				p50, p99 := lat[r][len(lat[r])/2], lat[r][len(lat[r])*99/100]
				results[name+"/p50"], results[name+"/p99"] = p50, p99
				results[name+"/kernel-p50"] = kern[r][len(kern[r])/2]
				b.ReportMetric(float64(p50.Nanoseconds())/1e3, fmt.Sprintf("p50-µs-%dk", n/1000))
				b.ReportMetric(float64(p99.Nanoseconds())/1e3, fmt.Sprintf("p99-µs-%dk", n/1000))
			}
		})
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
	if inc, full := results["incremental/100k/p50"], results["full/100k/p50"]; inc > 0 && full > 0 {
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

// ipcacheRig is a state of n remote entries and a reconciler applying it
// to a kernel ipcache of its own.
type ipcacheRig struct {
	st    *state.State
	table *notifyTable
	n     int
	host  netip.Addr
}

func benchPrefix(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
}

func newIPCacheRig(b *testing.B, n int, incremental bool) *ipcacheRig {
	b.Helper()
	st, err := state.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	r := &ipcacheRig{st: st, n: n, host: netip.MustParseAddr("192.168.2.10")}
	for lo := 0; lo < n; lo += 5000 {
		if err := st.Update(func(w *state.WriteTxn) error {
			for i := lo; i < min(lo+5000, n); i++ {
				if err := w.UpsertIP(state.IPCacheRow{Prefix: benchPrefix(i), Cluster: "cluster2", ID: 131073, HostIP: r.host}); err != nil {
					return err
				}
			}
			return w.MarkInitialized("bench")
		}); err != nil {
			b.Fatal(err)
		}
	}
	r.table = &notifyTable{Table: kernelIPCache(b), seen: make(chan datapath.IPCacheEntry, 1)}
	cfg := reconciler.Config[netip.Prefix, datapath.IPCacheEntry]{
		Name: "ipcache", Table: r.table, Initialized: func() bool { return true }, Resync: time.Hour,
	}
	if incremental {
		cfg.Incremental = NewIPCacheSource(st, "cluster1", "n1")
	} else {
		cfg.Changed = func(context.Context) <-chan struct{} { return st.Changed() }
		cfg.Desired = func() map[netip.Prefix]datapath.IPCacheEntry { return IPCache(st.Snapshot(), "cluster1", "n1") }
	}
	rec := reconciler.New(cfg)
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan struct{})
	go func() { _ = rec.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(b, time.Minute, fmt.Sprintf("the reconciler applying the %d initial entries", n), func() bool {
		return rec.Status().Applied >= n
	})
	return r
}

// change makes change i (a prefix's identity; the visits of one prefix are
// n changes apart, each changing it) and returns how long it took to reach
// the kernel map.
func (r *ipcacheRig) change(b *testing.B, i int) time.Duration {
	p := benchPrefix((i * 7919) % r.n)
	id := identity.NumericIdentity(131074 + (i/r.n)%2)
	r.table.mu.Lock()
	r.table.watch = p
	r.table.mu.Unlock()
	start := time.Now()
	if err := r.st.Update(func(w *state.WriteTxn) error {
		return w.UpsertIP(state.IPCacheRow{Prefix: p, Cluster: "cluster2", ID: id, HostIP: r.host})
	}); err != nil {
		b.Fatal(err)
	}
	for v := range r.table.seen {
		if v.Identity == id {
			break
		}
	}
	return time.Since(start)
}

// kernelUpdate writes update i straight into the kernel map: the kernel's
// part of a change.
func (r *ipcacheRig) kernelUpdate(b *testing.B, i int) time.Duration {
	p := benchPrefix((i * 7919) % r.n)
	v := datapath.IPCacheEntry{Identity: identity.NumericIdentity(131076 + i%2), HostIP: r.host, Cluster: "cluster2"}
	start := time.Now()
	if err := r.table.Table.Update(b.Context(), p, v); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
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
