package bpfdp

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/datapath"
)

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestRecordRoundTrip(t *testing.T) {
	for _, s := range []datapath.Service{
		{},
		{Namespace: "ns", Name: "n", Backends: []datapath.Backend{}},
		{Backends: []datapath.Backend{{Addr: netip.MustParseAddr("10.0.0.1"), Port: 1, Cluster: "c"}, {Addr: netip.MustParseAddr("::ffff:10.0.0.2"), Port: 2}}},
	} {
		b, err := encodeService(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeService(b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(s, got, cmpAddr); diff != "" {
			t.Fatalf("service (-want +got):\n%s", diff)
		}
	}
	for _, p := range []datapath.EndpointPolicy{
		{},
		{Identity: 1, EnforceEgress: true, Rules: []datapath.PolicyRule{}},
		{Identity: 0xffffff, EnforceIngress: true, Rules: []datapath.PolicyRule{{Identity: 2, Ingress: true, Proto: 6, Port: 1, EndPort: 9, Deny: true}}},
	} {
		got, err := decodePolicy(encodePolicy(p))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(p, got); diff != "" {
			t.Fatalf("policy (-want +got):\n%s", diff)
		}
	}
}

// Records come from bpffs, which anything privileged can write: decoding
// must fail cleanly, and what decodes must encode back to the same bytes.
func FuzzDecodeService(f *testing.F) {
	b, _ := encodeService(datapath.Service{Namespace: "ns", Name: "n", Backends: []datapath.Backend{{Addr: netip.MustParseAddr("10.0.0.1"), Port: 1, Cluster: "c"}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeService(b)
		if err != nil {
			return
		}
		again, err := encodeService(s)
		if err != nil || string(again) != string(b) {
			t.Fatalf("re-encoding %+v: %x (%v), decoded from %x", s, again, err, b)
		}
	})
}

func FuzzDecodePolicy(f *testing.F) {
	f.Add(encodePolicy(datapath.EndpointPolicy{Identity: 1, Rules: []datapath.PolicyRule{{Identity: 2, Port: 80}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePolicy(b)
		if err != nil {
			return
		}
		if again := encodePolicy(p); string(again) != string(b) {
			t.Fatalf("re-encoding %+v: %x, decoded from %x", p, again, b)
		}
	})
}
