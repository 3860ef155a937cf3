package bpf

import (
	"net/netip"
	"testing"
)

// The ipcache holds a mesh-sized set of entries (here 150k host entries
// and 1k CIDRs, above the 65,536 it held before) with the default size,
// reports its capacity, and its longest-prefix match stays right at that
// size; a map sized below what is written refuses the excess with an
// error.
func TestIPCacheHoldsAMeshOfEntries(t *testing.T) {
	requireRoot(t)
	d := load(t, Options{PinDir: newBPFFS(t)})
	c := d.IPCache()
	if got := c.Capacity(); got != DefaultIPCacheMaxEntries {
		t.Fatalf("capacity %d, want the default %d", got, DefaultIPCacheMaxEntries)
	}
	const hosts, cidrs = 150_000, 1_000
	host := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	for i := range hosts {
		if err := c.Update(host(i), IPCacheValue{Identity: uint32(100000 + i%1000)}); err != nil {
			t.Fatalf("entry %d (%v): %v", i, host(i), err)
		}
	}
	for i := range cidrs {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i >> 8), byte(i), 0}), 24)
		if err := c.Update(p, IPCacheValue{Identity: uint32(16777216 + i)}); err != nil {
			t.Fatalf("CIDR %d (%v): %v", i, p, err)
		}
	}
	held, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != hosts+cidrs {
		t.Fatalf("the map lists %d entries, want %d", len(held), hosts+cidrs)
	}
	pinned, err := OpenPinnedIPCache(d.opts.PinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pinned.Close() }()
	for _, tc := range []struct {
		addr string
		want uint32
	}{
		{"10.2.73.239", uint32(100000 + (2<<16|73<<8|239)%1000)},
		{"172.3.200.77", 16777216 + (3<<8 | 200)},
	} {
		e, ok, err := pinned.Lookup(netip.PrefixFrom(netip.MustParseAddr(tc.addr), 32))
		if err != nil || !ok || e.Identity != tc.want {
			t.Errorf("lookup %s = %+v, %v, %v; want identity %d", tc.addr, e, ok, err, tc.want)
		}
	}

	small := load(t, Options{PinDir: newBPFFS(t), IPCacheMaxEntries: 100})
	for i := range 100 {
		if err := small.IPCache().Update(host(i), IPCacheValue{Identity: 5}); err != nil {
			t.Fatalf("entry %d of 100: %v", i, err)
		}
	}
	if err := small.IPCache().Update(host(100), IPCacheValue{Identity: 5}); err == nil {
		t.Fatal("a map of 100 entries took a 101st")
	}
}

// Entries of both families, with tunnel endpoints of both families (an
// IPv6-only cluster's nodes) or none, list and look up as written.
func TestIPCacheFamilies(t *testing.T) {
	requireRoot(t)
	pinDir := newBPFFS(t)
	d := load(t, Options{PinDir: pinDir})
	want := map[netip.Prefix]IPCacheValue{
		netip.MustParsePrefix("10.1.0.5/32"):         {Identity: 65537, HostIP: netip.MustParseAddr("192.168.1.1")},
		netip.MustParsePrefix("fd00:1::5/128"):       {Identity: 65538, HostIP: netip.MustParseAddr("fd00:ffff::1")},
		netip.MustParsePrefix("10.2.0.0/16"):         {Identity: 16777217},
		netip.MustParsePrefix("fd00:2::/64"):         {Identity: 16777218, Flags: 3},
		netip.MustParsePrefix("10.1.0.6/32"):         {Identity: 65539, HostIP: netip.MustParseAddr("fd00:ffff::2")},
		netip.MustParsePrefix("fd00:1::6/128"):       {Identity: 65540, HostIP: netip.MustParseAddr("192.168.1.2")},
		netip.MustParsePrefix("::ffff:10.3.0.1/128"): {Identity: 65541},
	}
	for p, v := range want {
		must(t, d.IPCache().Update(p, v))
	}
	// The IPv4-mapped prefix is stored as IPv4.
	want[netip.MustParsePrefix("10.3.0.1/32")] = want[netip.MustParsePrefix("::ffff:10.3.0.1/128")]
	delete(want, netip.MustParsePrefix("::ffff:10.3.0.1/128"))
	got, err := d.IPCache().List()
	must(t, err)
	if len(got) != len(want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	pinned, err := OpenPinnedIPCache(pinDir)
	must(t, err)
	defer pinned.Close()
	for p, v := range want {
		if got[p] != v {
			t.Errorf("%v: listed %+v, want %+v", p, got[p], v)
		}
		if l, ok, err := pinned.Lookup(p); err != nil || !ok || l != v {
			t.Errorf("%v: pinned lookup %+v %v %v, want %+v", p, l, ok, err, v)
		}
	}
	if err := d.IPCache().Update(netip.MustParsePrefix("10.9.0.1/32"), IPCacheValue{HostIP: netip.MustParseAddr("fe80::1%eth0")}); err == nil {
		t.Error("a host IP with a zone was accepted")
	}
}

// Single addresses an older version kept in the trie move to the hosts map
// at load, so that each key is in one map and a delete removes it.
func TestIPCacheAdoptsHostsFromTheTrie(t *testing.T) {
	requireRoot(t)
	pinDir := newBPFFS(t)
	d := load(t, Options{PinDir: pinDir})
	host, cidr := netip.MustParsePrefix("10.1.0.5/32"), netip.MustParsePrefix("10.2.0.0/16")
	k, _, err := ipcacheKeyOf(host)
	must(t, err)
	v := rawValue(IPCacheValue{Identity: 65537, HostIP: netip.MustParseAddr("192.168.1.1")})
	must(t, d.tc.Ipcache.Update(&k, &v, 0)) // as an older version wrote it
	must(t, d.IPCache().Update(cidr, IPCacheValue{Identity: 16777217}))
	must(t, d.Close())

	d2 := load(t, Options{PinDir: pinDir})
	var got rawIPCacheValue
	if err := d2.tc.IpcacheHosts.Lookup(&k, &got); err != nil || got.value().Identity != 65537 {
		t.Fatalf("the host entry in the hosts map after a reload: %+v, %v", got, err)
	}
	var tk ipcacheKey
	var tv rawIPCacheValue
	it := d2.tc.Ipcache.Iterate()
	for it.Next(&tk, &tv) {
		if tk.prefix() == host {
			t.Fatalf("%v is still in the trie after a reload", host)
		}
	}
	must(t, it.Err())
	held, err := d2.IPCache().List()
	must(t, err)
	if len(held) != 2 || held[host].Identity != 65537 || held[cidr].Identity != 16777217 {
		t.Fatalf("after the reload: %v", held)
	}
	must(t, d2.IPCache().Delete(host))
	if held, _ := d2.IPCache().List(); len(held) != 1 {
		t.Fatalf("after deleting the host entry: %v", held)
	}
}
