package bpfdp_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

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
		{"IPv6 frontend with an IPv4 backend", bpfdp.ErrNotSupported,
			func() error {
				return d.Services().Update(ctx, datapath.ServiceKey{Addr: netip.MustParseAddr("fd00::1"), Port: 80, Protocol: "TCP"}, svc)
			},
			func() error {
				return d.Services().Delete(ctx, datapath.ServiceKey{Addr: netip.MustParseAddr("fd00::1"), Port: 80, Protocol: "TCP"})
			}},
		{"IPv4-mapped frontend", bpfdp.ErrNotCanonical,
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
		{"IPv6 backend of an IPv4 frontend", bpfdp.ErrNotSupported,
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
		{"tunnel endpoint with a zone", bpfdp.ErrNotSupported,
			func() error {
				return d.IPCache().Update(ctx, netip.MustParsePrefix("10.1.0.0/16"), datapath.IPCacheEntry{Identity: 1, HostIP: netip.MustParseAddr("fe80::3%eth0")})
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
	// IPv6 frontends with IPv6 backends, and IPv6 tunnel endpoints, are
	// held.
	fe6 := datapath.ServiceKey{Addr: netip.MustParseAddr("fd00:96::1"), Port: 80, Protocol: "TCP"}
	svc6 := datapath.Service{Backends: []datapath.Backend{{Addr: netip.MustParseAddr("fd00:1::5"), Port: 8080}}}
	must(t, d.Services().Update(ctx, fe6, svc6))
	if held := dptest.Held(t, d.Services()); !reflect.DeepEqual(held[fe6], svc6) {
		t.Fatalf("IPv6 service held as %+v, want %+v", held[fe6], svc6)
	}
	e6 := datapath.IPCacheEntry{Identity: 7, HostIP: netip.MustParseAddr("fd00:ffff::3")}
	must(t, d.IPCache().Update(ctx, netip.MustParsePrefix("fd00:1::5/128"), e6))
	if held := dptest.Held(t, d.IPCache()); held[netip.MustParsePrefix("fd00:1::5/128")] != e6 {
		t.Fatalf("IPv6 tunnel endpoint held as %+v, want %+v", held, e6)
	}
	err := d.Policies().Update(ctx, 1, datapath.EndpointPolicy{Rules: []datapath.PolicyRule{{Proto: 6, Port: 90, EndPort: 80}}})
	if !errors.Is(err, bpf.ErrInvalidRule) {
		t.Fatalf("Update of an invalid rule: %v, want bpf.ErrInvalidRule", err)
	}
}

// List returns what the kernel holds, whoever wrote it: rules rebuilt
// from the kernel's entries (one per entry), backends as the kernel holds
// them; rules of an endpoint without configuration (a crash between the
// two writes) come back as a rule no Update accepts, so that a reconciler
// rewrites the endpoint.
func TestListIsTheKernel(t *testing.T) {
	d := open(t, newKernel(t))
	ctx := t.Context()
	rules := []datapath.PolicyRule{{Identity: 2000, Ingress: true, Proto: 6, Port: 8080}}
	must(t, d.Policies().Update(ctx, 5, datapath.EndpointPolicy{Identity: 1000, EnforceIngress: true, Rules: rules}))
	must(t, d.BPF().SetPolicy(5, []bpf.PolicyRule{{Identity: 3000, Ingress: true, Port: 1024, EndPort: 1027}}))
	must(t, d.BPF().SetPolicy(6, []bpf.PolicyRule{{Identity: 3000, Ingress: true, Proto: 6}}))
	want := map[uint16]datapath.EndpointPolicy{
		5: {Identity: 1000, EnforceIngress: true, Rules: []datapath.PolicyRule{
			{Identity: 3000, Ingress: true, Proto: bpf.ProtoTCP, Port: 1024, EndPort: 1027},
			{Identity: 3000, Ingress: true, Proto: bpf.ProtoUDP, Port: 1024, EndPort: 1027},
			{Identity: 3000, Ingress: true, Proto: bpf.ProtoSCTP, Port: 1024, EndPort: 1027},
		}},
		6: {Rules: []datapath.PolicyRule{{EndPort: 1}}},
	}
	if diff := cmp.Diff(want, dptest.Held(t, d.Policies())); diff != "" {
		t.Fatalf("policies (-want +got):\n%s", diff)
	}
	if err := d.Policies().Update(ctx, 7, want[6]); !errors.Is(err, bpf.ErrInvalidRule) {
		t.Fatalf("Update of the rules listed for an endpoint without configuration: %v, want bpf.ErrInvalidRule", err)
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
}

// Older versions pinned two companion maps beside the bpf pins: New removes
// them and their directory, and says so.
func TestLegacyPinsRemoved(t *testing.T) {
	pinDir := newKernel(t)
	meta := pinDir + "-meta" // where they were
	must(t, os.MkdirAll(meta, 0o700))
	for _, spec := range []*ebpf.MapSpec{
		{Name: "cm_records", Type: ebpf.Hash, KeySize: 12, ValueSize: 1024, MaxEntries: 1 << 16, Flags: unix.BPF_F_NO_PREALLOC, Pinning: ebpf.PinByName},
		{Name: "cm_clusters", Type: ebpf.Array, KeySize: 4, ValueSize: 64, MaxEntries: 256, Pinning: ebpf.PinByName},
	} {
		m, err := ebpf.NewMapWithOptions(spec, ebpf.MapOptions{PinPath: meta})
		must(t, err)
		must(t, m.Close())
	}
	var logs bytes.Buffer
	d := openWith(t, bpf.Options{PinDir: pinDir}, "", bpfdp.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if _, err := os.Stat(meta); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after New: %v, want it removed", meta, err)
	}
	for _, name := range []string{"cm_records", "cm_clusters"} {
		if !strings.Contains(logs.String(), filepath.Join(meta, name)) {
			t.Errorf("the removal of %s is not logged:\n%s", name, logs.String())
		}
	}
	must(t, d.Close())

	// Something else left in the directory: it stays, with a warning; the
	// datapath works.
	must(t, os.MkdirAll(filepath.Join(meta, "other"), 0o700))
	logs.Reset()
	d = openWith(t, bpf.Options{PinDir: pinDir}, "", bpfdp.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("a directory that could not be removed is not logged:\n%s", logs.String())
	}
	must(t, d.IPCache().Update(t.Context(), netip.MustParsePrefix("10.1.0.0/16"), datapath.IPCacheEntry{Identity: 1}))
}

// Unpin removes every pin.
func TestUnpin(t *testing.T) {
	pinDir := newKernel(t)
	d := open(t, pinDir)
	must(t, d.Unpin())
	must(t, d.Close())
	if _, err := os.Stat(pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after Unpin: %v", pinDir, err)
	}
}
