package netpol

import (
	"slices"
	"testing"
)

// TestScenariosCoverTheSuite: every test of upstream's network_policy.go
// is here once (49: 43 of "NetworkPolicy between server and client", 3
// "using UDP", 3 "using SCTP"), and every probe is of the model's ports
// and protocols, so that a world serving the model can probe it.
func TestScenariosCoverTheSuite(t *testing.T) {
	all := Scenarios()
	if len(all) != 49 {
		t.Errorf("%d scenarios, want the suite's 49", len(all))
	}
	seen := map[string]bool{}
	for _, sc := range all {
		if seen[sc.Name] {
			t.Errorf("scenario %q twice", sc.Name)
		}
		seen[sc.Name] = true
		if len(sc.Steps) == 0 {
			t.Errorf("scenario %q has no step", sc.Name)
		}
		for i, st := range sc.Steps {
			if len(st.Probes) == 0 {
				t.Errorf("scenario %q step %d probes nothing", sc.Name, i)
			}
			for _, p := range st.Probes {
				if !slices.Contains(Ports, p.Port) || !slices.Contains(Protocols, p.Proto) {
					t.Errorf("scenario %q step %d probes %s/%d, not a port of the model", sc.Name, i, p.Proto, p.Port)
				}
			}
		}
	}
}
