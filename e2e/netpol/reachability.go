package netpol

import (
	"fmt"
	"strings"
)

// Peer matches pods by namespace and name; an empty field matches any.
type Peer struct{ NS, Pod string }

// Matches reports whether p is one of the pods m names.
func (m Peer) Matches(p Pod) bool {
	return (m.NS == "" || m.NS == p.Namespace()) && (m.Pod == "" || m.Pod == p.Name())
}

// Reachability is the truth table of one probe (a port and protocol): for
// each pair of pods, whether a connection from the first to the second
// succeeds. Loopback (a pod to itself) is never checked, as upstream.
type Reachability struct {
	pods     []Pod
	expected map[Pod]map[Pod]bool
}

// NewReachability is the table of pods where every pair is def.
func NewReachability(pods []Pod, def bool) *Reachability {
	r := &Reachability{pods: pods, expected: map[Pod]map[Pod]bool{}}
	for _, f := range pods {
		r.expected[f] = map[Pod]bool{}
		for _, t := range pods {
			r.expected[f][t] = def
		}
	}
	return r
}

// Expected is the expectation for from → to.
func (r *Reachability) Expected(from, to Pod) bool { return r.expected[from][to] }

// Expect sets the expectation for from → to.
func (r *Reachability) Expect(from, to Pod, ok bool) { r.expected[from][to] = ok }

// ExpectPeer sets the expectation for every pair of pods from and to
// match.
func (r *Reachability) ExpectPeer(from, to Peer, ok bool) {
	r.ExpectWhere(from.Matches, to.Matches, ok)
}

// ExpectWhere sets the expectation for every pair whose source satisfies
// from and destination to.
func (r *Reachability) ExpectWhere(from, to func(Pod) bool, ok bool) {
	for _, f := range r.pods {
		for _, t := range r.pods {
			if from(f) && to(t) {
				r.expected[f][t] = ok
			}
		}
	}
}

// ExpectAllIngress sets the expectation for every pair towards to.
func (r *Reachability) ExpectAllIngress(to Pod, ok bool) {
	for _, f := range r.pods {
		r.expected[f][to] = ok
	}
}

// ExpectAllEgress sets the expectation for every pair from from.
func (r *Reachability) ExpectAllEgress(from Pod, ok bool) {
	for _, t := range r.pods {
		r.expected[from][t] = ok
	}
}

// Diff compares observed with the expectations and returns the table of
// both ("." agrees; "X" observed connected but expected not; "-" expected
// connected but observed not) and the number of wrong cells; loopback is
// ignored.
func (r *Reachability) Diff(observed map[Pod]map[Pod]bool) (string, int) {
	var b strings.Builder
	wrong := 0
	fmt.Fprintf(&b, "%-5s", "")
	for _, t := range r.pods {
		fmt.Fprintf(&b, " %-4s", t)
	}
	b.WriteString("\n")
	for _, f := range r.pods {
		fmt.Fprintf(&b, "%-5s", f)
		for _, t := range r.pods {
			c := "."
			switch exp, got := r.expected[f][t], observed[f][t]; {
			case f == t:
				c = " "
			case got && !exp:
				c, wrong = "X", wrong+1
			case exp && !got:
				c, wrong = "-", wrong+1
			}
			fmt.Fprintf(&b, " %-4s", c)
		}
		b.WriteString("\n")
	}
	return b.String(), wrong
}
