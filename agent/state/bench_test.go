package state

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// ipInputs builds n ip entries (10.x.y.z/32, distinct pod names).
func ipInputs(n int) ([]netip.Prefix, []schema.IPEntry) {
	prefixes := make([]netip.Prefix, n)
	entries := make([]schema.IPEntry, n)
	for i := range n {
		prefixes[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		entries[i] = ipEntry(65537, "192.168.0.1")
		entries[i].K8sPodName = fmt.Sprint("pod-", i)
	}
	return prefixes, entries
}

const ingestN = 100_000

func BenchmarkIngestIPs(b *testing.B) {
	prefixes, entries := ipInputs(ingestN)
	b.ReportAllocs()
	for b.Loop() {
		s := newState(b)
		sink := s.RemoteSink()
		for i := range prefixes {
			sink.UpsertIP("c2", prefixes[i], entries[i])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*ingestN), "ns/entry")
}

// BenchmarkIngestIPsBatch inserts the same entries in one transaction, as
// a local watcher's initial list can through State.Update.
func BenchmarkIngestIPsBatch(b *testing.B) {
	prefixes, entries := ipInputs(ingestN)
	b.ReportAllocs()
	for b.Loop() {
		s := newState(b)
		err := s.Update(func(w *WriteTxn) error {
			for i := range prefixes {
				if err := w.UpsertIP(IPCacheFromSchema("c2", prefixes[i], entries[i])); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*ingestN), "ns/entry")
}

// BenchmarkLookupIP looks up addresses among 100k /32 entries, a few /24
// and /16 ones and IPv6 ones: a /32 hit, a /16 hit and a miss per op.
func BenchmarkLookupIP(b *testing.B) {
	prefixes, entries := ipInputs(ingestN)
	s := newState(b)
	err := s.Update(func(w *WriteTxn) error {
		for i := range prefixes {
			if err := w.UpsertIP(IPCacheFromSchema("c2", prefixes[i], entries[i])); err != nil {
				return err
			}
		}
		for _, p := range []string{"10.200.0.0/16", "10.201.0.0/16", "10.200.1.0/24", "10.3.0.0/24", "fd00::/64", "fd00::1/128"} {
			if err := w.UpsertIP(IPCacheRow{Prefix: pfx(p), Cluster: "c3", ID: 7}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	hit32, hit16, miss := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("10.200.9.9"), netip.MustParseAddr("11.0.0.1")
	sn := s.Snapshot()
	b.ReportAllocs()
	for b.Loop() {
		_, ok1 := sn.LookupIP(hit32)
		e, ok2 := sn.LookupIP(hit16)
		_, ok3 := sn.LookupIP(miss)
		if !ok1 || !ok2 || ok3 || e.Prefix.Bits() != 16 {
			b.Fatalf("lookups = %v %v(%s) %v", ok1, ok2, e.Prefix, ok3)
		}
	}
}

// TestHeapPerIPEntry logs the live heap the State holds per ip entry after
// ingesting 100k of them. The inputs (including the pod name strings the
// rows share) are allocated before the first measurement, so only the
// State's own memory is counted.
//
// Host entries (/32, /128) are grouped in one memdb row per /24 (/120)
// block (ipBlock), so what was dominant, memdb's immutable radix tree
// (go-immutable-radix gives every inner node and every leaf its own watch
// channel, mutateCh, 96 bytes each: ~400 bytes per row), is paid per block:
// 508 → 74 bytes per /32 entry (a 64-byte hostEntry plus the pod name's
// bytes), then 47 with 40-byte entries (cluster and host interned
// together, the address's last byte a bit of the block's bitmap). Before,
// the ipcache lost its cluster index for the same reason (904 → 508).
func TestHeapPerIPEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test ingests 100k entries; make test runs it (no -short)")
	}
	prefixes, entries := ipInputs(ingestN)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := newState(t)
	sink := s.RemoteSink()
	for i := range prefixes {
		sink.UpsertIP("c2", prefixes[i], entries[i])
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := s.Snapshot().Count(TableIPCache); got != ingestN {
		t.Fatalf("ipcache rows = %d, want %d", got, ingestN)
	}
	perEntry := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / ingestN
	t.Logf("heap per ip entry after %d entries: %.0f bytes (race detector: %v)", ingestN, perEntry, raceEnabled)
	runtime.KeepAlive(prefixes)
	runtime.KeepAlive(entries)
	runtime.KeepAlive(s)
}
