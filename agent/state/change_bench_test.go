package state

import (
	"context"
	"net/netip"
	"runtime"
	"runtime/pprof"
	"slices"
	"testing"
	"time"

	"github.com/clustermesh/clustermesh/identity"
)

// changeRig is a state of n host entries and a subscriber of its ipcache.
type changeRig struct {
	s    *State
	sub  *Subscription
	n    int
	host netip.Addr
}

func benchPfx(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
}

func newChangeRig(b *testing.B, n int) *changeRig {
	s := newState(b)
	host := netip.MustParseAddr("192.168.2.10")
	for lo := 0; lo < n; lo += 5000 {
		if err := s.Update(func(w *WriteTxn) error {
			for i := lo; i < min(lo+5000, n); i++ {
				if err := w.UpsertIP(IPCacheRow{Prefix: benchPfx(i), Cluster: "cluster2", ID: 131073, HostIP: host}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	sub := s.Subscribe(TableIPCache)
	sub.Next()
	return &changeRig{s: s, sub: sub, n: n, host: host}
}

// change makes change i (a prefix's identity) and returns how long the
// write and the read took.
func (r *changeRig) change(b *testing.B, i int) (time.Duration, time.Duration) {
	p := benchPfx((i * 7919) % r.n)
	id := 131074 + (i/r.n)%2
	start := time.Now()
	if err := r.s.Update(func(w *WriteTxn) error {
		return w.UpsertIP(IPCacheRow{Prefix: p, Cluster: "cluster2", ID: identity.NumericIdentity(id), HostIP: r.host})
	}); err != nil {
		b.Fatal(err)
	}
	mid := time.Now()
	<-r.sub.Changed()
	cs, sn, _ := r.sub.Next()
	for _, c := range cs {
		for _, q := range IPCachePrefixes(c) {
			if e, ok := sn.IPCacheRow(q); !ok || int(e.ID) != id {
				b.Fatalf("%s: %v %v", q, e, ok)
			}
		}
	}
	return mid.Sub(start), time.Since(mid)
}

// BenchmarkIPChangeSideBySide is the state's part of BenchmarkIPCacheChange
// (agent/desired): one remote pod's change written (w: State.Update) and
// read by a subscriber (r: Next, the changed prefixes, their entries),
// with 1k and 100k host entries in two states side by side, their changes
// alternating; it reports the p50 of each per size, in ns, and their
// ratios 100k/1k. The CPU profile's samples carry the label size=1k or
// size=100k (go tool pprof -tagfocus size=100k).
func BenchmarkIPChangeSideBySide(b *testing.B) {
	rigs := []*changeRig{newChangeRig(b, 1000), newChangeRig(b, 100_000)}
	runtime.GC()
	const changes = 20000
	labels := []pprof.LabelSet{pprof.Labels("size", "1k"), pprof.Labels("size", "100k")}
	w := [2][]time.Duration{}
	rd := [2][]time.Duration{}
	for k := range b.N {
		for i := k * changes; i < (k+1)*changes; i++ {
			for j := range 2 {
				r := (i + j) % 2
				var a, c time.Duration
				pprof.Do(b.Context(), labels[r], func(context.Context) { a, c = rigs[r].change(b, i) })
				w[r] = append(w[r], a)
				rd[r] = append(rd[r], c)
			}
		}
	}
	for r := range 2 {
		slices.Sort(w[r])
		slices.Sort(rd[r])
	}
	p := func(s []time.Duration) float64 { return float64(s[len(s)/2].Nanoseconds()) }
	b.ReportMetric(p(w[0]), "w-1k")
	b.ReportMetric(p(w[1]), "w-100k")
	b.ReportMetric(p(rd[0]), "r-1k")
	b.ReportMetric(p(rd[1]), "r-100k")
	b.ReportMetric(p(w[1])/p(w[0]), "w-ratio")
	b.ReportMetric(p(rd[1])/p(rd[0]), "r-ratio")
}
