package netpol

import (
	"fmt"
	"strings"
)

// podName is "ns/pod", as the upstream suite writes pods.
type podName string

func (p podName) ns() string  { return strings.SplitN(string(p), "/", 2)[0] }
func (p podName) pod() string { return strings.SplitN(string(p), "/", 2)[1] }

// peer matches pods by namespace and name; an empty field matches any.
type peer struct{ ns, pod string }

func (m peer) matches(p podName) bool {
	return (m.ns == "" || m.ns == p.ns()) && (m.pod == "" || m.pod == p.pod())
}

// reachability is the truth table of one probe (a port and protocol): for
// each pair of pods, whether a connection from the first to the second
// succeeds. Loopback (a pod to itself) is never checked, as upstream.
type reachability struct {
	pods     []podName
	expected map[podName]map[podName]bool
}

func newReachability(pods []podName, def bool) *reachability {
	r := &reachability{pods: pods, expected: map[podName]map[podName]bool{}}
	for _, f := range pods {
		r.expected[f] = map[podName]bool{}
		for _, t := range pods {
			r.expected[f][t] = def
		}
	}
	return r
}

func (r *reachability) expect(from, to podName, ok bool) { r.expected[from][to] = ok }

func (r *reachability) expectPeer(from, to peer, ok bool) {
	for _, f := range r.pods {
		for _, t := range r.pods {
			if from.matches(f) && to.matches(t) {
				r.expected[f][t] = ok
			}
		}
	}
}

func (r *reachability) expectAllIngress(to podName, ok bool) {
	for _, f := range r.pods {
		r.expected[f][to] = ok
	}
}

func (r *reachability) expectAllEgress(from podName, ok bool) {
	for _, t := range r.pods {
		r.expected[from][t] = ok
	}
}

// diff compares observed with the expectations and returns the table of
// both ("." agrees; "X" observed connected but expected not; "-" expected
// connected but observed not) and the number of wrong cells; loopback is
// ignored.
func (r *reachability) diff(observed map[podName]map[podName]bool) (string, int) {
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
