package netpol

import (
	"fmt"
	"slices"
	"testing"
)

// TestNetworkPolicyMatrix runs every Scenario of the upstream suite
// (scenarios, then moreScenarios) over IPv4 and over IPv6: for each step,
// the policies go through the agent's engine into the datapath, then every
// pair of pods is probed for each of the step's ports and protocols and
// compared with the expected truth table.
func TestNetworkPolicyMatrix(t *testing.T) {
	w := newWorld(t)
	all := make([]Pod, len(w.pods))
	for i, p := range w.pods {
		all[i] = p.name
	}
	for _, family := range []int{4, 6} {
		for _, sc := range slices.Concat(scenarios, moreScenarios) {
			t.Run(fmt.Sprintf("IPv%d/%s", family, sc.Name), func(t *testing.T) {
				for _, st := range sc.Steps {
					w.apply(t, st, family)
					for _, ps := range st.Probes {
						r := NewReachability(all, true)
						ps.Expect(r)
						w.check(t, family, probeCase{port: ps.Port, proto: ps.Proto, want: r})
					}
				}
			})
		}
	}
}
