package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/clustermesh/clustermesh/identity"
)

// TraceQuery asks for the verdict one local endpoint gives a new flow with
// a peer, in one direction.
type TraceQuery struct {
	// Endpoint is the local endpoint's key ("namespace/name").
	Endpoint string
	// Peer is the peer's identity; PeerAddr its address, if known (rules
	// by address, NetworkPolicy ipBlock, match it).
	Peer     identity.NumericIdentity
	PeerAddr netip.Addr
	// Ingress: the flow comes from the peer to the endpoint.
	Ingress bool
	Proto   uint8
	Port    uint16
}

// RuleRef names a rule of a policy: the provenance of a verdict.
type RuleRef struct {
	Policy PolicyKey `json:"policy"`
	// Rule is where the rule is in the policy ("spec.ingress[0]",
	// "specs[1].egressDeny[0]").
	Rule string `json:"rule"`
	Deny bool   `json:"deny,omitempty"`
}

func (r RuleRef) String() string { return string(r.Policy) + " " + r.Rule }

// Trace is the verdict of a TraceQuery and why: taken from the engine's
// own state (the rules linked to the endpoint, the identities their
// selectors selected), the same that builds the datapath's rules.
type Trace struct {
	Endpoint string                   `json:"endpoint"`
	Identity identity.NumericIdentity `json:"identity"`
	// Direction is "ingress" or "egress".
	Direction string `json:"direction"`
	// Allowed is the verdict of the endpoint's computed datapath policy
	// (datapath.EndpointPolicy.AllowsAt), what the kernel enforces.
	Allowed bool `json:"allowed"`
	// Enforced: some policy with allow rules (or none: a default deny)
	// selects the endpoint in this direction; IsolatedBy names them.
	Enforced   bool        `json:"enforced"`
	IsolatedBy []PolicyKey `json:"isolatedBy,omitempty"`
	// DenyOnlyBy are policies selecting the endpoint in this direction
	// with deny rules only (they isolate nothing).
	DenyOnlyBy []PolicyKey `json:"denyOnlyBy,omitempty"`
	// AllowedBy and DeniedBy are the rules matching the flow.
	AllowedBy []RuleRef `json:"allowedBy,omitempty"`
	DeniedBy  []RuleRef `json:"deniedBy,omitempty"`
	// Reason says it in one sentence.
	Reason string `json:"reason"`
	// Inconsistent is set when the rules found disagree with the computed
	// datapath policy (a bug: please report it); Allowed stays the
	// datapath's verdict.
	Inconsistent string `json:"inconsistent,omitempty"`
}

// Trace answers q from the engine's current state; ok is false when the
// endpoint is not known.
func (e *Engine) Trace(q TraceQuery) (Trace, bool) {
	ee, ok := e.endpoints[q.Endpoint]
	if !ok {
		return Trace{}, false
	}
	t := Trace{Endpoint: q.Endpoint, Identity: ee.ep.ID, Direction: direction(q.Ingress)}
	addrCIDR := e.addrCIDR(q.PeerAddr)
	for _, p := range e.policies {
		for _, en := range p.enfs {
			if en.e.ingress != q.Ingress {
				continue
			}
			if _, ok := en.subjects[ee]; !ok {
				continue
			}
			if en.e.deny {
				t.DenyOnlyBy = appendOnce(t.DenyOnlyBy, p.key)
			} else {
				t.IsolatedBy = appendOnce(t.IsolatedBy, p.key)
			}
		}
	}
	t.Enforced = len(t.IsolatedBy) > 0
	if t.DenyOnlyBy = slices.DeleteFunc(t.DenyOnlyBy, func(k PolicyKey) bool { return slices.Contains(t.IsolatedBy, k) }); len(t.DenyOnlyBy) == 0 {
		t.DenyOnlyBy = nil
	}
	for re := range ee.rules {
		if re.r.ingress != q.Ingress || !e.ruleMatches(re, ee, q, addrCIDR) {
			continue
		}
		ref := RuleRef{Policy: re.pol.key, Rule: re.r.field, Deny: re.r.deny}
		if re.r.deny {
			t.DeniedBy = append(t.DeniedBy, ref)
		} else {
			t.AllowedBy = append(t.AllowedBy, ref)
		}
	}
	for _, s := range [][]RuleRef{t.AllowedBy, t.DeniedBy} {
		slices.SortFunc(s, func(a, b RuleRef) int {
			return cmp.Or(strings.Compare(string(a.Policy), string(b.Policy)), strings.Compare(a.Rule, b.Rule))
		})
	}
	slices.Sort(t.IsolatedBy)
	slices.Sort(t.DenyOnlyBy)

	dp, _ := e.EndpointPolicy(q.Endpoint)
	t.Allowed = dp.AllowsAt(q.Peer, addrCIDR, q.Ingress, q.Proto, q.Port)
	explained := len(t.DeniedBy) == 0 && (!t.Enforced || len(t.AllowedBy) > 0)
	if explained != t.Allowed {
		t.Inconsistent = fmt.Sprintf("the matching rules say allowed=%v, the computed datapath policy allowed=%v", explained, t.Allowed)
	}
	t.Reason = t.reason()
	return t, true
}

func (t Trace) reason() string {
	dir := t.Direction
	switch {
	case len(t.DeniedBy) > 0:
		return fmt.Sprintf("denied by %s (a deny rule wins over any allow)", joinRefs(t.DeniedBy))
	case t.Enforced && len(t.AllowedBy) > 0:
		return fmt.Sprintf("allowed by %s", joinRefs(t.AllowedBy))
	case t.Enforced:
		return fmt.Sprintf("selected by %s for %s and no rule allows: denied (isolated by %s)",
			joinKeys(t.IsolatedBy), dir, joinKeys(t.IsolatedBy))
	case len(t.DenyOnlyBy) > 0:
		return fmt.Sprintf("only deny rules (of %s) select the endpoint for %s and none matches: allowed", joinKeys(t.DenyOnlyBy), dir)
	}
	return fmt.Sprintf("no policy selects the endpoint for %s: allowed by default", dir)
}

// ruleMatches reports whether rule re, as applied to ee, matches q: the
// same test datapath.EndpointPolicy.AllowsAt makes on the rule's entries,
// on the selections the engine cached for the rule.
func (e *Engine) ruleMatches(re *ruleEntry, ee *epEntry, q TraceQuery, addrCIDR identity.NumericIdentity) bool {
	peer := re.r.allPeers
	for _, s := range re.sels {
		if peer {
			break
		}
		_, peer = s.ids[q.Peer]
		if !peer && addrCIDR != 0 && byAddress(s.m) && !re.r.deny {
			_, peer = s.ids[addrCIDR]
		}
	}
	if !peer {
		return false
	}
	for _, p := range e.resolvePorts(&re.r, ee) {
		if (p.proto == ProtoAny || p.proto == q.Proto) && (p.port == 0 || q.Port >= p.port && q.Port <= max(p.port, p.endPort)) {
			return true
		}
	}
	return false
}

// addrCIDR is the CIDR identity of the longest prefix of the policies
// holding a (0 for none), as the datapath looks it up.
func (e *Engine) addrCIDR(a netip.Addr) identity.NumericIdentity {
	if !a.IsValid() {
		return 0
	}
	a = a.Unmap()
	var id identity.NumericIdentity
	best := -1
	for p, c := range e.cidrs {
		if p.Contains(a) && p.Bits() > best {
			id, best = c.id, p.Bits()
		}
	}
	return id
}

func direction(ingress bool) string {
	if ingress {
		return "ingress"
	}
	return "egress"
}

func appendOnce(s []PolicyKey, k PolicyKey) []PolicyKey {
	if slices.Contains(s, k) {
		return s
	}
	return append(s, k)
}

func joinRefs(rs []RuleRef) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ", ")
}

func joinKeys(ks []PolicyKey) string {
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = string(k)
	}
	return strings.Join(parts, ", ")
}

// PolicySummary is a policy that applies to an endpoint: its rules linked
// to it and whether it enforces a direction.
type PolicySummary struct {
	Policy PolicyKey `json:"policy"`
	// Ingress and Egress: the policy isolates the endpoint in that
	// direction ("deny-only" when it has deny rules only there).
	Ingress string    `json:"ingress,omitempty"`
	Egress  string    `json:"egress,omitempty"`
	Rules   []RuleRef `json:"rules"`
}

// EndpointPolicies returns the policies that select endpoint key, sorted,
// with the rules of each that apply to it; ok is false for an unknown
// endpoint.
func (e *Engine) EndpointPolicies(key string) ([]PolicySummary, bool) {
	ee, ok := e.endpoints[key]
	if !ok {
		return nil, false
	}
	by := map[PolicyKey]*PolicySummary{}
	get := func(p *polEntry) *PolicySummary {
		if s, ok := by[p.key]; ok {
			return s
		}
		s := &PolicySummary{Policy: p.key, Rules: []RuleRef{}}
		by[p.key] = s
		return s
	}
	for _, p := range e.policies {
		for _, en := range p.enfs {
			if _, ok := en.subjects[ee]; !ok {
				continue
			}
			s := get(p)
			mode := "enforced"
			if en.e.deny {
				mode = "deny-only"
			}
			if en.e.ingress {
				s.Ingress = cmp.Or(s.Ingress, mode)
				if mode == "enforced" {
					s.Ingress = mode
				}
			} else {
				s.Egress = cmp.Or(s.Egress, mode)
				if mode == "enforced" {
					s.Egress = mode
				}
			}
		}
	}
	for re := range ee.rules {
		s := get(re.pol)
		s.Rules = append(s.Rules, RuleRef{Policy: re.pol.key, Rule: re.r.field, Deny: re.r.deny})
	}
	out := make([]PolicySummary, 0, len(by))
	for _, s := range by {
		slices.SortFunc(s.Rules, func(a, b RuleRef) int { return strings.Compare(a.Rule, b.Rule) })
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b PolicySummary) int { return strings.Compare(string(a.Policy), string(b.Policy)) })
	return out, true
}
