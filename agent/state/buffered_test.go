package state

import (
	"net"
	"net/netip"
	"testing"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

func TestBufferedSinkCommitsOnFlushDrainAndSize(t *testing.T) {
	s, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := s.BufferedRemoteSink()
	entry := func(i int) (netip.Prefix, schema.IPEntry) {
		a := netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)})
		return netip.PrefixFrom(a, 32), schema.IPEntry{IP: net.IP(a.AsSlice()), ID: 131073}
	}
	p, e := entry(1)
	b.UpsertIP("cluster2", p, e)
	if n := s.Snapshot().Count(TableIPCache); n != 0 {
		t.Fatalf("%d entries visible before Flush", n)
	}
	b.Flush()
	if _, ok := s.Snapshot().LookupIP(p.Addr()); !ok {
		t.Fatal("entry not visible after Flush")
	}
	for i := 2; i < maxBuffered+2; i++ { // the 4096th write commits on its own
		p, e := entry(i)
		b.UpsertIP("cluster2", p, e)
	}
	if n := s.Snapshot().Count(TableIPCache); n != maxBuffered+1 { // + the one flushed before
		t.Fatalf("%d entries after %d buffered writes, want %d committed", n, maxBuffered, maxBuffered+1)
	}
	p, e = entry(maxBuffered + 5)
	b.UpsertIP("cluster3", p, e)
	b.Drain("cluster2") // commits cluster3's pending write, then drains cluster2
	sn := s.Snapshot()
	if n := sn.Count(TableIPCache); n != 1 {
		t.Fatalf("%d entries after draining cluster2, want cluster3's 1", n)
	}
	if got, ok := sn.LookupIP(p.Addr()); !ok || got.Cluster != "cluster3" {
		t.Fatalf("cluster3's entry: %+v %v", got, ok)
	}
}
