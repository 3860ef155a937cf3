package state

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/clustermesh/clustermesh/identity"
)

// TestConcurrentWriters runs one writer per (cluster, kind), as package
// remote does, with readers waiting on Changed, then checks the result.
func TestConcurrentWriters(t *testing.T) {
	const perWriter = 200
	s := newState(t)
	sink := s.RemoteSink()
	clusters := []string{"c2", "c3", "c4"}
	ls := labels(t, "k8s:app=a")

	var writers sync.WaitGroup
	for ci, c := range clusters {
		base := identity.NumericIdentity(ci+2) << 16
		writers.Go(func() {
			for i := range perWriter {
				sink.UpsertIP(c, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(ci), byte(i >> 8), byte(i)}), 32), ipEntry(uint32(base)+1, ""))
				if i%2 == 1 {
					sink.DeleteIP(c, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(ci), byte(i >> 8), byte(i)}), 32))
				}
			}
		})
		writers.Go(func() {
			for i := range perWriter {
				sink.UpsertIdentity(c, base+identity.NumericIdentity(i+1), ls)
			}
		})
		writers.Go(func() {
			for i := range perWriter {
				sink.UpsertNode(c, node(c, fmt.Sprint("n", i)))
			}
		})
		writers.Go(func() {
			for i := range perWriter {
				sink.UpsertService(c, service(c, "ns", fmt.Sprint("svc", i)))
			}
		})
	}

	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				sn := s.Snapshot()
				if e, ok := sn.LookupIP(netip.MustParseAddr("10.0.0.0")); ok && e.Cluster != "c2" {
					t.Errorf("10.0.0.0 belongs to %s", e.Cluster)
				}
				_ = sn.ServiceCopies("ns", "svc0")
				select {
				case <-stop:
					return
				case <-sn.Changed():
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()

	sn := s.Snapshot()
	checkPrefixLens(t, sn)
	n := len(clusters)
	want := map[string]int{TableIPCache: n * perWriter / 2, TableIdentities: n * perWriter, TableNodes: n * perWriter, TableServices: n * perWriter}
	for table, w := range want {
		if got := sn.Count(table); got != w {
			t.Errorf("%s rows = %d, want %d", table, got, w)
		}
	}
	if got := len(sn.ServiceCopies("ns", "svc7")); got != n {
		t.Errorf("copies of ns/svc7 = %d, want %d", got, n)
	}

	sink.Drain("c3")
	sn = s.Snapshot()
	checkPrefixLens(t, sn)
	for table, w := range want {
		if got := sn.Count(table); got != w*(n-1)/n {
			t.Errorf("%s rows after draining c3 = %d, want %d", table, got, w*(n-1)/n)
		}
	}
	if got := sn.Nodes("c3"); got != nil {
		t.Errorf("c3 still has %d nodes", len(got))
	}
}
