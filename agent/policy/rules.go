package policy

import (
	"fmt"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/clustermesh/clustermesh/identity"
)

// rule is one compiled rule of a policy.
type rule struct {
	subject identity.Selector // over local endpoints' labels
	ingress bool
	deny    bool
	// allPeers: every peer (identity 0); otherwise peers.
	allPeers bool
	peers    []matcher
	// ports: nil means every port and protocol.
	ports []portSpec
	// field is where the rule is in its policy ("spec.ingress[0]"): the
	// provenance Trace reports. Set at compile time, never read on the
	// paths that compute results.
	field string
}

// enforcement says that a policy enforces a direction on its subjects.
type enforcement struct {
	subject identity.Selector
	ingress bool
	// deny: the direction is enforced by deny rules only; what they do not
	// deny stays allowed (a deny-only policy never causes a default deny).
	deny bool
	// field names the part of the policy that enforces ("spec.ingress").
	field string
}

// Compiled is a policy ready for the engine (see Engine.UpsertPolicy).
type Compiled struct {
	rules    []rule
	enforces []enforcement
	problems []Problem
}

// portSpec is a port, a range or a named port, with a protocol (0: any).
type portSpec struct {
	proto         uint8
	port, endPort uint16 // port 0: every port
	name          string // a named container port, resolved per endpoint
}

// compiler accumulates problems while compiling one policy.
type compiler struct {
	cluster             string
	defaultLocalCluster bool
	problems            []Problem
}

func (c *compiler) problem(field, reason, format string, args ...any) {
	c.problems = append(c.problems, Problem{Field: field, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// selector converts a Kubernetes label selector; extra requirements are
// added (namespace, cluster). ok is false when it is invalid (reported).
func (c *compiler) selector(field string, ls *metav1.LabelSelector, extra ...identity.Requirement) (identity.Selector, bool) {
	var ml map[string]string
	var exprs []identity.Requirement
	if ls != nil {
		ml = ls.MatchLabels
		for _, e := range ls.MatchExpressions {
			exprs = append(exprs, identity.Requirement{Key: e.Key, Operator: identity.Operator(e.Operator), Values: e.Values})
		}
	}
	sel, err := identity.NewSelector(ml, append(exprs, extra...))
	if err != nil {
		c.problem(field, "InvalidSelector", "%v; fix the selector", err)
		return identity.Selector{}, false
	}
	return sel, true
}

// peerSelector is selector for a peer: without a cluster requirement it is
// limited to the local cluster (when configured so).
func (c *compiler) peerSelector(field string, ls *metav1.LabelSelector, extra ...identity.Requirement) (matcher, bool) {
	sel, ok := c.selector(field, ls, extra...)
	if !ok {
		return nil, false
	}
	if c.defaultLocalCluster && !sel.HasKey(identity.ClusterLabelKey) {
		sel, ok = c.selector(field, ls, append(extra, inCluster(c.cluster))...)
		if !ok {
			return nil, false
		}
	}
	return labelMatcher{sel}, true
}

func inNamespace(ns string) identity.Requirement {
	return identity.Requirement{Key: identity.SourceK8s + ":" + identity.NamespaceLabelKey, Operator: identity.OpIn, Values: []string{ns}}
}

func inCluster(c string) identity.Requirement {
	return identity.Requirement{Key: identity.SourceK8s + ":" + identity.ClusterLabelKey, Operator: identity.OpIn, Values: []string{c}}
}

// port parses a port given as a number or a name, with an optional end.
func (c *compiler) port(field string, proto uint8, raw string, endPort int32) (portSpec, bool) {
	ps := portSpec{proto: proto}
	if raw == "" || raw == "0" {
		if endPort != 0 {
			c.problem(field, "InvalidPort", "endPort %d without a port; set the port that starts the range", endPort)
			return ps, false
		}
		return ps, true
	}
	n, err := strconv.Atoi(raw)
	if err != nil {
		if msgs := validation.IsValidPortName(raw); len(msgs) > 0 {
			c.problem(field, "InvalidPort", "port %q is neither a number (1-65535) nor a port name: %s", raw, msgs[0])
			return ps, false
		}
		if endPort != 0 {
			c.problem(field, "InvalidPort", "endPort %d with the named port %q; ranges need a numeric port", endPort, raw)
			return ps, false
		}
		ps.name = raw
		return ps, true
	}
	if n < 1 || n > 65535 {
		c.problem(field, "InvalidPort", "port %d is out of range 1-65535", n)
		return ps, false
	}
	ps.port = uint16(n)
	if endPort != 0 {
		if endPort < int32(n) || endPort > 65535 {
			c.problem(field, "InvalidPort", "endPort %d must be between port %d and 65535", endPort, n)
			return ps, false
		}
		if endPort > int32(n) {
			ps.endPort = uint16(endPort)
		}
	}
	return ps, true
}

// Problems returns what the compiler left out of the policy.
func (c *Compiled) Problems() []Problem { return c.problems }
