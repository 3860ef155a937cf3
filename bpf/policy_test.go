package bpf

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPortBlocks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi uint16
		want   [][2]uint32
	}{
		{80, 80, [][2]uint32{{80, 16}}},
		{8080, 8081, [][2]uint32{{8080, 15}}},
		{9000, 9010, [][2]uint32{{9000, 13}, {9008, 15}, {9010, 16}}},
		{1, 65535, nil}, // checked for coverage below
	} {
		got := portBlocks(tc.lo, tc.hi)
		// Blocks must be aligned, disjoint, in order and cover lo..hi.
		next := uint32(tc.lo)
		for _, b := range got {
			size := uint32(1) << (16 - b[1])
			if b[0] != next || b[0]%size != 0 {
				t.Fatalf("%d-%d: block %v misplaced (next %d)", tc.lo, tc.hi, b, next)
			}
			next += size
		}
		if next != uint32(tc.hi)+1 {
			t.Fatalf("%d-%d: blocks end at %d", tc.lo, tc.hi, next-1)
		}
		if len(got) > 30 {
			t.Fatalf("%d-%d: %d blocks", tc.lo, tc.hi, len(got))
		}
		if tc.want != nil {
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("%d-%d (-want +got):\n%s", tc.lo, tc.hi, diff)
			}
		}
	}
}

func TestExpandRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules []PolicyRule
		want  []PolicyEntry
	}{{
		name:  "any",
		rules: []PolicyRule{{Ingress: true}},
		want:  []PolicyEntry{{Ingress: true}},
	}, {
		name:  "port without proto is TCP, UDP and SCTP",
		rules: []PolicyRule{{Identity: 5, Port: 53}},
		want: []PolicyEntry{
			{Identity: 5, Proto: ProtoTCP, Port: 53, PortBits: 16},
			{Identity: 5, Proto: ProtoUDP, Port: 53, PortBits: 16},
			{Identity: 5, Proto: ProtoSCTP, Port: 53, PortBits: 16},
		},
	}, {
		name: "equal entries merge, deny wins",
		rules: []PolicyRule{
			{Identity: 5, Proto: ProtoTCP, Port: 80},
			{Identity: 5, Proto: ProtoTCP, Port: 80, Deny: true},
		},
		want: []PolicyEntry{{Identity: 5, Proto: ProtoTCP, Port: 80, PortBits: 16, Deny: true}},
	}, {
		name: "a less specific deny turns a covered allow into a deny",
		rules: []PolicyRule{
			{Identity: 5, Proto: ProtoTCP, Port: 8080},
			{Identity: 5, Proto: ProtoTCP, Port: 8064, EndPort: 8191, Deny: true},
			{Identity: 5, Proto: ProtoUDP, Port: 8080},
			{Identity: 6, Proto: ProtoTCP, Port: 8080},
		},
		want: []PolicyEntry{
			{Identity: 5, Proto: ProtoTCP, Port: 8064, PortBits: 9, Deny: true},
			{Identity: 5, Proto: ProtoTCP, Port: 8080, PortBits: 16, Deny: true},
			{Identity: 5, Proto: ProtoUDP, Port: 8080, PortBits: 16},
			{Identity: 6, Proto: ProtoTCP, Port: 8080, PortBits: 16},
		},
	}, {
		name: "a deny of any protocol covers everything of the identity",
		rules: []PolicyRule{
			{Identity: 5, Ingress: true, Deny: true},
			{Identity: 5, Ingress: true, Proto: ProtoUDP},
			{Identity: 5, Proto: ProtoUDP},
		},
		want: []PolicyEntry{
			{Ingress: true, Identity: 5, Deny: true},
			{Ingress: true, Identity: 5, Proto: ProtoUDP, Deny: true},
			{Identity: 5, Proto: ProtoUDP},
		},
	}, {
		name:  "a rule by address is also keyed by its tagged identity",
		rules: []PolicyRule{{Identity: 16777217, Ingress: true, Proto: ProtoTCP, Port: 80, ByAddress: true}},
		want: []PolicyEntry{
			{Ingress: true, Identity: 16777217, Proto: ProtoTCP, Port: 80, PortBits: 16},
			{Ingress: true, Identity: 16777217 | IdentityByAddress, Proto: ProtoTCP, Port: 80, PortBits: 16},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := expandRules(tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestExpandRulesInvalid(t *testing.T) {
	for _, r := range []PolicyRule{
		{EndPort: 80},
		{Port: 90, EndPort: 80},
		{Proto: ProtoICMP, Port: 80},
	} {
		if _, err := expandRules([]PolicyRule{r}); !errors.Is(err, ErrInvalidRule) {
			t.Errorf("%+v: err %v, want ErrInvalidRule", r, err)
		}
	}
}
