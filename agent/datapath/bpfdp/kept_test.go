package bpfdp

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/datapath/dptest"
	"github.com/clustermesh/clustermesh/bpf"
)

// The rules List rebuilds from the kernel's entries are faithful: they
// expand to exactly those entries, so a listed policy equals a desired one
// only if the kernel enforces the desired rules.
func TestRulesOfIsFaithful(t *testing.T) {
	for name, rules := range map[string][]datapath.PolicyRule{
		"none": nil,
		"mixed": {
			{Identity: 2000, Ingress: true, Proto: 6, Port: 8080},
			{Identity: 0, Ingress: true, Port: 53},
			{Identity: 3000, Proto: 17, Port: 1000, EndPort: 2000},
			{Identity: 2000, Ingress: true, Proto: 6, Deny: true},
			{Identity: 4000, Proto: 1},
			{Identity: 5000, Ingress: true, Proto: 6, Port: 1, EndPort: 65535},
		},
		"many": dptest.ManyRules(300),
	} {
		t.Run(name, func(t *testing.T) {
			entries, err := bpf.ExpandRules(bpfRules(rules))
			if err != nil {
				t.Fatal(err)
			}
			got := rulesOf(entries)
			if got == nil || slices.Contains(got, unlisted) {
				t.Fatalf("rulesOf: %v, want rules", got)
			}
			back, err := bpf.ExpandRules(bpfRules(got))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(entries, back); diff != "" {
				t.Fatalf("rebuilt rules expand to other entries (-kernel +rebuilt):\n%s", diff)
			}
			if diff := cmp.Diff(got, KeptPolicy(datapath.EndpointPolicy{Rules: rules}).Rules); diff != "" {
				t.Fatalf("KeptPolicy (-rulesOf +KeptPolicy):\n%s", diff)
			}
		})
	}
}

// Entries no rules expand to come back as a rule Update refuses.
func TestRulesOfUnlisted(t *testing.T) {
	for _, e := range []bpf.PolicyEntry{
		{Ingress: true, Identity: 1, Proto: 0, Port: 0, PortBits: 5},    // any protocol with a port block
		{Ingress: true, Identity: 1, Proto: 6, Port: 0, PortBits: 1},    // a block from port 0
		{Ingress: true, Identity: 1, Proto: 1, Port: 8, PortBits: 16},   // ICMP with a port
		{Ingress: true, Identity: 1, Proto: 6, Port: 1000, PortBits: 8}, // a block not aligned
	} {
		if got := rulesOf([]bpf.PolicyEntry{e}); !slices.Equal(got, []datapath.PolicyRule{unlisted}) {
			t.Errorf("rulesOf(%+v) = %v, want the unlisted rule", e, got)
		}
	}
	if _, err := bpf.ExpandRules(bpfRules([]datapath.PolicyRule{unlisted})); !errors.Is(err, bpf.ErrInvalidRule) {
		t.Fatalf("the unlisted rule expands (%v): a desired policy could equal it", err)
	}
}
