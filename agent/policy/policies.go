package policy

import (
	"net/netip"
	"slices"

	"github.com/clustermesh/clustermesh/identity"
)

// UpsertPolicy sets policy key (nil c deletes it). Its rules are linked to
// the endpoints they select; the selectors they use are taken from the
// cache (a new selector is matched against every identity once).
func (e *Engine) UpsertPolicy(key PolicyKey, c *Compiled) {
	e.DeletePolicy(key)
	if c == nil {
		return
	}
	p := &polEntry{key: key, c: c}
	for _, r := range c.rules {
		for _, m := range r.peers {
			if cm, ok := m.(cidrMatcher); ok {
				for _, pfx := range append([]netip.Prefix{cm.prefix}, cm.except...) {
					e.refCIDR(pfx)
					p.cidrs = append(p.cidrs, pfx)
				}
			}
		}
	}
	for _, r := range c.rules {
		re := &ruleEntry{pol: p, r: r, subjects: map[*epEntry]struct{}{}}
		for _, m := range r.peers {
			s := e.selector(m)
			s.users[re] = struct{}{}
			re.sels = append(re.sels, s)
		}
		p.rules = append(p.rules, re)
	}
	for _, en := range c.enforces {
		p.enfs = append(p.enfs, &enfEntry{pol: p, e: en, subjects: map[*epEntry]struct{}{}})
	}
	e.policies[key] = p
	for _, ee := range e.endpoints {
		e.linkEndpoint(p, ee)
	}
}

// DeletePolicy removes policy key from every endpoint it applied to.
func (e *Engine) DeletePolicy(key PolicyKey) {
	p, ok := e.policies[key]
	if !ok {
		return
	}
	delete(e.policies, key)
	for _, en := range p.enfs {
		for ee := range en.subjects {
			ee.enforce[b2i(en.e.ingress)][b2i(en.e.deny)]--
			ee.cached = nil
		}
	}
	for _, re := range p.rules {
		for ee := range re.subjects {
			e.addRuleEntries(ee, re, -1)
			delete(ee.rules, re)
		}
		for _, s := range re.sels {
			delete(s.users, re)
			if len(s.users) == 0 {
				delete(e.selectors, s.m.key())
			}
		}
	}
	for _, pfx := range p.cidrs {
		e.unrefCIDR(pfx)
	}
}

// selector returns the cache entry of m, creating it (matched against
// every identity) when new.
func (e *Engine) selector(m matcher) *selEntry {
	k := m.key()
	if s, ok := e.selectors[k]; ok {
		return s
	}
	s := &selEntry{m: m, ids: map[identity.NumericIdentity]struct{}{}, users: map[*ruleEntry]struct{}{}}
	for id, idt := range e.identities {
		if m.matches(idt) {
			s.ids[id] = struct{}{}
		}
	}
	e.selectors[k] = s
	return s
}

// refCIDR takes a reference on the CIDR identity of pfx, allocating it
// (labels cidr:<prefix> and reserved:world) on first use.
func (e *Engine) refCIDR(pfx netip.Prefix) {
	if c, ok := e.cidrs[pfx]; ok {
		c.refs++
		return
	}
	var id identity.NumericIdentity
	if n := len(e.freeCIDR); n > 0 {
		id, e.freeCIDR = e.freeCIDR[n-1], e.freeCIDR[:n-1]
	} else {
		id = e.nextCIDR
		e.nextCIDR++
	}
	e.cidrs[pfx] = &cidrEntry{id: id, refs: 1}
	e.UpsertIdentity(Identity{ID: id, Prefix: pfx, Labels: identity.NewLabels(
		identity.Label{Source: "cidr", Key: pfx.String()},
		identity.Label{Source: identity.SourceReserved, Key: "world"},
	)})
}

func (e *Engine) unrefCIDR(pfx netip.Prefix) {
	c, ok := e.cidrs[pfx]
	if !ok {
		return
	}
	if c.refs--; c.refs > 0 {
		return
	}
	delete(e.cidrs, pfx)
	e.freeCIDR = append(e.freeCIDR, c.id)
	e.DeleteIdentity(c.id)
}

// CIDRIdentities returns the CIDR identities policies use, for the
// ipcache.
func (e *Engine) CIDRIdentities() map[netip.Prefix]identity.NumericIdentity {
	out := make(map[netip.Prefix]identity.NumericIdentity, len(e.cidrs))
	for p, c := range e.cidrs {
		out[p] = c.id
	}
	return out
}

// Problems returns the problems of every policy that has some.
func (e *Engine) Problems() map[PolicyKey][]Problem {
	out := map[PolicyKey][]Problem{}
	for k, p := range e.policies {
		if len(p.c.problems) > 0 {
			out[k] = slices.Clone(p.c.problems)
		}
	}
	return out
}

// Recompute rebuilds every selector's selection and every endpoint's result
// from scratch: what a non-incremental engine does on every change. The
// result is the same as the incremental one (tests check it); it is used as
// the baseline of the benchmark and as a consistency check.
func (e *Engine) Recompute() {
	for _, s := range e.selectors {
		s.ids = map[identity.NumericIdentity]struct{}{}
		for id, idt := range e.identities {
			if s.m.matches(idt) {
				s.ids[id] = struct{}{}
			}
		}
	}
	for _, ee := range e.endpoints {
		ee.rules = map[*ruleEntry]struct{}{}
		ee.enforce = [2][2]int{}
		ee.cached = nil
	}
	for _, p := range e.policies {
		for _, re := range p.rules {
			re.subjects = map[*epEntry]struct{}{}
		}
		for _, en := range p.enfs {
			en.subjects = map[*epEntry]struct{}{}
		}
	}
	for _, ee := range e.endpoints {
		for _, p := range e.policies {
			for _, en := range p.enfs {
				if en.e.subject.Matches(ee.ep.Labels) {
					en.subjects[ee] = struct{}{}
					ee.enforce[b2i(en.e.ingress)][b2i(en.e.deny)]++
				}
			}
			for _, re := range p.rules {
				if re.r.subject.Matches(ee.ep.Labels) {
					re.subjects[ee] = struct{}{}
					ee.rules[re] = struct{}{}
				}
			}
		}
		e.rebuildEndpoint(ee)
	}
}
