package bpfdp_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/bpfdp"
	"github.com/clustermesh/clustermesh/agent/datapath/dptest"
	"github.com/clustermesh/clustermesh/bpf"
)

// What the kernel cannot hold, or would hold under another key, is refused
// by Update with an error saying so; Delete of it succeeds (never stored).
func TestRefusals(t *testing.T) {
	d := open(t, newKernel(t))
	ctx := t.Context()
	v4 := netip.MustParseAddr("10.96.0.1")
	svc := datapath.Service{Backends: []datapath.Backend{{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}}}
	for _, tc := range []struct {
		name string
		err  error
		do   func() error
		del  func() error
	}{
		{"IPv6 frontend", bpfdp.ErrNotSupported,
			func() error {
				return d.Services().Update(ctx, datapath.ServiceKey{Addr: netip.MustParseAddr("fd00::1"), Port: 80, Protocol: "TCP"}, svc)
			},
			func() error {
				return d.Services().Delete(ctx, datapath.ServiceKey{Addr: netip.MustParseAddr("fd00::1"), Port: 80, Protocol: "TCP"})
			}},
		{"IPv4-mapped frontend", bpfdp.ErrNotSupported,
			func() error {
				return d.Services().Update(ctx, datapath.ServiceKey{Addr: netip.AddrFrom16(v4.As16()), Port: 80, Protocol: "TCP"}, svc)
			}, nil},
		{"SCTP frontend", bpfdp.ErrNotSupported,
			func() error {
				return d.Services().Update(ctx, datapath.ServiceKey{Addr: v4, Port: 80, Protocol: "SCTP"}, svc)
			},
			func() error {
				return d.Services().Delete(ctx, datapath.ServiceKey{Addr: v4, Port: 80, Protocol: "SCTP"})
			}},
		{"IPv6 backend", bpfdp.ErrNotSupported,
			func() error {
				return d.Services().Update(ctx, datapath.ServiceKey{Addr: v4, Port: 80, Protocol: "TCP"},
					datapath.Service{Backends: []datapath.Backend{{Addr: netip.MustParseAddr("fd00::2"), Port: 80}}})
			}, nil},
		{"unmasked prefix", bpfdp.ErrNotCanonical,
			func() error {
				return d.IPCache().Update(ctx, netip.MustParsePrefix("10.1.2.3/16"), datapath.IPCacheEntry{Identity: 1})
			},
			func() error { return d.IPCache().Delete(ctx, netip.MustParsePrefix("10.1.2.3/16")) }},
		{"IPv4-mapped prefix", bpfdp.ErrNotCanonical,
			func() error {
				return d.IPCache().Update(ctx, netip.MustParsePrefix("::ffff:10.1.0.0/112"), datapath.IPCacheEntry{Identity: 1})
			}, nil},
		{"IPv6 tunnel endpoint", bpfdp.ErrNotSupported,
			func() error {
				return d.IPCache().Update(ctx, netip.MustParsePrefix("10.1.0.0/16"), datapath.IPCacheEntry{Identity: 1, HostIP: netip.MustParseAddr("fd00::3")})
			}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.err) {
				t.Fatalf("Update: %v, want %v", err, tc.err)
			}
			if tc.del != nil {
				must(t, tc.del())
			}
		})
	}
	if held := dptest.Held(t, d.Services()); len(held) != 0 {
		t.Fatalf("services after refusals: %v", held)
	}
	if held := dptest.Held(t, d.IPCache()); len(held) != 0 {
		t.Fatalf("ipcache after refusals: %v", held)
	}
	err := d.Policies().Update(ctx, 1, datapath.EndpointPolicy{Rules: []datapath.PolicyRule{{Proto: 6, Port: 90, EndPort: 80}}})
	if !errors.Is(err, bpf.ErrInvalidRule) {
		t.Fatalf("Update of an invalid rule: %v, want bpf.ErrInvalidRule", err)
	}
}

// When the kernel holds something its record does not describe (a crash
// between the two writes, or another writer), List returns what the
// kernel holds, rebuilt without the record: a reconciler sees a difference
// and rewrites it.
func TestKernelWinsOverRecords(t *testing.T) {
	d := open(t, newKernel(t))
	ctx := t.Context()
	rules := []datapath.PolicyRule{{Identity: 2000, Ingress: true, Proto: 6, Port: 8080}}
	must(t, d.Policies().Update(ctx, 5, datapath.EndpointPolicy{Identity: 1000, EnforceIngress: true, Rules: rules}))
	must(t, d.BPF().SetPolicy(5, []bpf.PolicyRule{{Identity: 3000, Ingress: true, Port: 1024, EndPort: 1027}}))
	want := datapath.EndpointPolicy{Identity: 1000, EnforceIngress: true, Rules: []datapath.PolicyRule{
		{Identity: 3000, Ingress: true, Proto: bpf.ProtoTCP, Port: 1024, EndPort: 1027},
		{Identity: 3000, Ingress: true, Proto: bpf.ProtoUDP, Port: 1024, EndPort: 1027},
		{Identity: 3000, Ingress: true, Proto: bpf.ProtoSCTP, Port: 1024, EndPort: 1027},
	}}
	if diff := cmp.Diff(map[uint16]datapath.EndpointPolicy{5: want}, dptest.Held(t, d.Policies())); diff != "" {
		t.Fatalf("policies (-want +got):\n%s", diff)
	}

	key := datapath.ServiceKey{Addr: netip.MustParseAddr("10.96.0.1"), Port: 443, Protocol: "TCP"}
	be := datapath.Backend{Addr: netip.MustParseAddr("10.0.0.1"), Port: 6443, Cluster: "c1"}
	must(t, d.Services().Update(ctx, key, datapath.Service{Namespace: "default", Name: "kubernetes", Backends: []datapath.Backend{be}}))
	fe := bpf.Frontend{Addr: key.Addr, Port: key.Port, Proto: bpf.ProtoTCP}
	must(t, d.BPF().Services().Update(fe, []bpf.Backend{{Addr: be.Addr, Port: 6444}}))
	wantSvc := datapath.Service{Backends: []datapath.Backend{{Addr: be.Addr, Port: 6444}}}
	if diff := cmp.Diff(map[datapath.ServiceKey]datapath.Service{key: wantSvc}, dptest.Held(t, d.Services()), dptest.CmpOptions()); diff != "" {
		t.Fatalf("services (-want +got):\n%s", diff)
	}

	// An ipcache entry with a cluster index this package never allocated.
	must(t, d.BPF().IPCache().Update(netip.MustParsePrefix("10.9.0.0/16"), bpf.IPCacheValue{Identity: 7, Flags: 77}))
	got := dptest.Held(t, d.IPCache())[netip.MustParsePrefix("10.9.0.0/16")]
	if got.Cluster != "<unknown cluster index 77>" {
		t.Fatalf("cluster of a foreign entry: %q", got.Cluster)
	}
}

// Cluster indices (255) are reclaimed from names no entry uses any more.
func TestClusterIndicesReclaimed(t *testing.T) {
	pinDir := newKernel(t)
	d := open(t, pinDir)
	ctx := t.Context()
	prefix := func(i int) netip.Prefix { return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 3, byte(i), 0}), 24) }
	for i := range 255 {
		must(t, d.IPCache().Update(ctx, prefix(i), datapath.IPCacheEntry{Identity: 1, Cluster: fmt.Sprintf("c%d", i)}))
	}
	if err := d.IPCache().Update(ctx, prefix(255), datapath.IPCacheEntry{Identity: 1, Cluster: "one-too-many"}); err == nil {
		t.Fatal("a 256th cluster name got an index while 255 are in use")
	}
	must(t, d.IPCache().Delete(ctx, prefix(0)))
	must(t, d.IPCache().Update(ctx, prefix(255), datapath.IPCacheEntry{Identity: 1, Cluster: "reuses-c0"}))

	d = dptest.Restart(t, d, opener(pinDir)).(*bpfdp.Datapath)
	held := dptest.Held(t, d.IPCache())
	if len(held) != 255 || held[prefix(255)].Cluster != "reuses-c0" || held[prefix(254)].Cluster != "c254" {
		t.Fatalf("after a restart: %d entries, %+v, %+v", len(held), held[prefix(255)], held[prefix(254)])
	}
}

// Unpin removes the companion maps with the bpf pins.
func TestUnpin(t *testing.T) {
	pinDir := newKernel(t)
	d := open(t, pinDir)
	must(t, d.Unpin())
	must(t, d.Close())
	for _, dir := range []string{pinDir, bpfdp.MetaDir(pinDir)} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s after Unpin: %v", dir, err)
		}
	}
}
