package policy

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cmv1 "github.com/clustermesh/clustermesh/apis/clustermesh/v1alpha1"
	"github.com/clustermesh/clustermesh/identity"
)

// CompileClusterMeshPolicy compiles a ClusterMeshNetworkPolicy: its
// endpoint selector and peer selectors are limited to its namespace unless
// a peer selector names the namespace label.
func (e *Engine) CompileClusterMeshPolicy(p *cmv1.ClusterMeshNetworkPolicy) (PolicyKey, *Compiled) {
	return PolicyKey("cmnp/" + p.Namespace + "/" + p.Name), e.compileRules(p.Namespace, cmv1.Rules(p.Spec, p.Specs))
}

// CompileClusterwidePolicy compiles a ClusterMeshClusterwideNetworkPolicy.
func (e *Engine) CompileClusterwidePolicy(p *cmv1.ClusterMeshClusterwideNetworkPolicy) (PolicyKey, *Compiled) {
	return PolicyKey("ccmnp/" + p.Name), e.compileRules("", cmv1.Rules(p.Spec, p.Specs))
}

func (e *Engine) compileRules(ns string, specs []cmv1.PolicyRule) *Compiled {
	c := &compiler{cluster: e.cfg.Cluster, defaultLocalCluster: e.cfg.DefaultLocalCluster}
	out := &Compiled{}
	if len(specs) == 0 {
		c.problem("spec", "EmptyPolicy", "the policy has neither spec nor specs; it applies nothing")
	}
	for i, spec := range specs {
		f := "spec"
		if len(specs) > 1 {
			f = fmt.Sprintf("specs[%d]", i)
		}
		extra := []identity.Requirement{inCluster(e.cfg.Cluster)}
		if ns != "" {
			extra = append(extra, inNamespace(ns))
		}
		if spec.EndpointSelector == nil {
			c.problem(f+".endpointSelector", "InvalidSelector", "endpointSelector is required (use {} for every endpoint)")
			continue
		}
		subject, ok := c.selector(f+".endpointSelector", spec.EndpointSelector, extra...)
		if !ok {
			continue
		}
		for _, d := range []struct {
			name    string
			ingress bool
			deny    bool
			rules   []peerRule
			present bool
		}{
			{"ingress", true, false, ingressRules(spec.Ingress), spec.Ingress != nil},
			{"ingressDeny", true, true, ingressRules(spec.IngressDeny), spec.IngressDeny != nil},
			{"egress", false, false, egressRules(spec.Egress), spec.Egress != nil},
			{"egressDeny", false, true, egressRules(spec.EgressDeny), spec.EgressDeny != nil},
		} {
			if !d.present {
				continue
			}
			out.enforces = append(out.enforces, enforcement{subject: subject, ingress: d.ingress, deny: d.deny, field: f + "." + d.name})
			for j, pr := range d.rules {
				if r, ok := c.cnpRule(fmt.Sprintf("%s.%s[%d]", f, d.name, j), ns, subject, d.ingress, d.deny, pr); ok {
					out.rules = append(out.rules, r)
				}
			}
		}
	}
	out.problems = c.problems
	return out
}

// peerRule is an ingress or egress rule with its fields named by role.
type peerRule struct {
	endpoints []metav1.LabelSelector
	entities  []string
	cidrs     []string
	cidrSets  []cmv1.CIDRRule
	ports     []cmv1.PortRule
	prefix    string // "from" or "to"
}

func ingressRules(rs []cmv1.IngressRule) []peerRule {
	out := make([]peerRule, len(rs))
	for i, r := range rs {
		out[i] = peerRule{r.FromEndpoints, r.FromEntities, r.FromCIDR, r.FromCIDRSet, r.ToPorts, "from"}
	}
	return out
}

func egressRules(rs []cmv1.EgressRule) []peerRule {
	out := make([]peerRule, len(rs))
	for i, r := range rs {
		out[i] = peerRule{r.ToEndpoints, r.ToEntities, r.ToCIDR, r.ToCIDRSet, r.ToPorts, "to"}
	}
	return out
}

// cnpRule compiles one rule: L3 peers AND L4 ports. Without any peer field
// the rule applies to every peer if it has ports, and to none otherwise.
func (c *compiler) cnpRule(field, ns string, subject identity.Selector, ingress, deny bool, pr peerRule) (rule, bool) {
	r := rule{subject: subject, ingress: ingress, deny: deny, field: field}
	named := len(pr.endpoints) + len(pr.entities) + len(pr.cidrs) + len(pr.cidrSets)
	for i := range pr.endpoints {
		f := fmt.Sprintf("%s.%sEndpoints[%d]", field, pr.prefix, i)
		var extra []identity.Requirement
		sel, ok := c.selector(f, &pr.endpoints[i])
		if !ok {
			continue
		}
		if ns != "" && !sel.HasKey(identity.NamespaceLabelKey) && !isReservedSelector(&pr.endpoints[i]) {
			extra = append(extra, inNamespace(ns))
		}
		if isReservedSelector(&pr.endpoints[i]) {
			r.peers = append(r.peers, labelMatcher{sel}) // reserved identities have no cluster
			continue
		}
		if m, ok := c.peerSelector(f, &pr.endpoints[i], extra...); ok {
			r.peers = append(r.peers, m)
		}
	}
	for i, ent := range pr.entities {
		f := fmt.Sprintf("%s.%sEntities[%d]", field, pr.prefix, i)
		if ent == "all" {
			r.allPeers = true
			continue
		}
		m, ok := entityMatcher(ent, c.cluster)
		if !ok {
			c.problem(f, "UnknownEntity", "unknown entity %q; use one of all, world, cluster, host, remote-node, init, health, unmanaged, kube-apiserver, ingress", ent)
			continue
		}
		r.peers = append(r.peers, m)
	}
	for i, raw := range pr.cidrs {
		if m, ok := c.cidr(fmt.Sprintf("%s.%sCIDR[%d]", field, pr.prefix, i), raw, nil); ok {
			r.peers = append(r.peers, m)
		}
	}
	for i, cs := range pr.cidrSets {
		if m, ok := c.cidr(fmt.Sprintf("%s.%sCIDRSet[%d]", field, pr.prefix, i), cs.Cidr, cs.ExceptCIDRs); ok {
			r.peers = append(r.peers, m)
		}
	}
	switch {
	case named == 0 && len(pr.ports) == 0:
		return r, false // an empty rule allows nothing
	case named == 0:
		r.allPeers = true
	case !r.allPeers && len(r.peers) == 0:
		return r, false // every peer was invalid
	}
	nPorts := 0
	for i, p := range pr.ports {
		for j, pp := range p.Ports {
			nPorts++
			f := fmt.Sprintf("%s.toPorts[%d].ports[%d]", field, i, j)
			proto, err := ParseProtocol(pp.Protocol, ProtoAny)
			if err != nil {
				c.problem(f, "InvalidPort", "%v", err)
				continue
			}
			if ps, ok := c.port(f, proto, pp.Port, pp.EndPort); ok {
				r.ports = append(r.ports, ps)
			}
		}
	}
	if nPorts > 0 && len(r.ports) == 0 {
		return r, false
	}
	return r, true
}

// isReservedSelector reports whether a selector names only reserved labels
// ("reserved:host"), which are neither namespaced nor clustered.
func isReservedSelector(ls *metav1.LabelSelector) bool {
	n := 0
	for k := range ls.MatchLabels {
		if len(k) > 9 && k[:9] == identity.SourceReserved+":" {
			n++
		}
	}
	return n > 0 && n == len(ls.MatchLabels) && len(ls.MatchExpressions) == 0
}
