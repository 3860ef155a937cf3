package policy

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Config of an Engine.
type Config struct {
	// Cluster is the local cluster's name.
	Cluster string
	// DefaultLocalCluster limits peer selectors without a cluster
	// requirement to the local cluster (--policy-default-local-cluster).
	DefaultLocalCluster bool
}

// CIDRIdentityBase is the first local-scope identity, given to CIDRs.
const CIDRIdentityBase identity.NumericIdentity = 1 << 24

// Engine holds policies, identities and endpoints, and the per-endpoint
// result, kept up to date incrementally.
type Engine struct {
	cfg        Config
	identities map[identity.NumericIdentity]*Identity
	selectors  map[string]*selEntry
	policies   map[PolicyKey]*polEntry
	endpoints  map[string]*epEntry
	cidrs      map[netip.Prefix]*cidrEntry
	freeCIDR   []identity.NumericIdentity
	nextCIDR   identity.NumericIdentity
	// namedPorts are the named container ports of the cluster's pods, by
	// name: egress rules to a named port use them.
	namedPorts map[string][]schema.NamedPort
	gen        uint64
}

type selEntry struct {
	m     matcher
	ids   map[identity.NumericIdentity]struct{}
	users map[*ruleEntry]struct{}
}

type ruleEntry struct {
	pol      *polEntry // the policy it belongs to (provenance)
	r        rule
	sels     []*selEntry
	subjects map[*epEntry]struct{}
}

type enfEntry struct {
	pol      *polEntry
	e        enforcement
	subjects map[*epEntry]struct{}
}

type polEntry struct {
	key   PolicyKey
	c     *Compiled
	rules []*ruleEntry
	enfs  []*enfEntry
	cidrs []netip.Prefix
}

type cidrEntry struct {
	id   identity.NumericIdentity
	refs int
}

type epEntry struct {
	ep    Endpoint
	rules map[*ruleEntry]struct{}
	// enforce counts the enforcements selecting it: [ingress][deny-only].
	enforce [2][2]int
	entries map[datapath.PolicyRule]int
	cached  *datapath.EndpointPolicy
	// gen counts the results built: it changes exactly when the result may
	// have (cheap change detection for callers).
	gen uint64
}

// NewEngine returns an empty engine; the reserved identities are known
// from the start.
func NewEngine(cfg Config) *Engine {
	e := &Engine{
		cfg: cfg, identities: map[identity.NumericIdentity]*Identity{}, selectors: map[string]*selEntry{},
		policies: map[PolicyKey]*polEntry{}, endpoints: map[string]*epEntry{}, cidrs: map[netip.Prefix]*cidrEntry{},
		nextCIDR: CIDRIdentityBase, namedPorts: map[string][]schema.NamedPort{},
	}
	for id := identity.NumericIdentity(1); id <= identity.ReservedIngress; id++ {
		if ls := identity.ReservedLabels(id); ls.Len() > 0 {
			e.UpsertIdentity(Identity{ID: id, Labels: ls})
		}
	}
	return e
}

// UpsertIdentity adds or changes an identity: only the cached selectors
// whose selection changes, and the endpoints of their rules, are touched.
func (e *Engine) UpsertIdentity(id Identity) {
	stored := id
	e.identities[id.ID] = &stored
	for _, s := range e.selectors {
		_, was := s.ids[id.ID]
		if now := s.m.matches(&stored); now != was {
			e.selectionChanged(s, id.ID, now)
		}
	}
}

// DeleteIdentity removes an identity.
func (e *Engine) DeleteIdentity(id identity.NumericIdentity) {
	if _, ok := e.identities[id]; !ok {
		return
	}
	delete(e.identities, id)
	for _, s := range e.selectors {
		if _, was := s.ids[id]; was {
			e.selectionChanged(s, id, false)
		}
	}
}

// selectionChanged records that s now selects id (or no longer does) and
// updates the endpoints of the rules using s.
func (e *Engine) selectionChanged(s *selEntry, id identity.NumericIdentity, selected bool) {
	delta := -1
	if selected {
		s.ids[id] = struct{}{}
		delta = 1
	} else {
		delete(s.ids, id)
	}
	for re := range s.users {
		for ep := range re.subjects {
			e.addEntries(ep, re, []identity.NumericIdentity{id}, byAddress(s.m), delta)
		}
	}
}

// UpsertEndpoint adds or changes a local endpoint; its rules are found and
// its result rebuilt.
func (e *Engine) UpsertEndpoint(ep Endpoint) {
	if old, ok := e.endpoints[ep.Key]; ok {
		if old.ep.ID == ep.ID && old.ep.Labels.Equal(ep.Labels) && slices.Equal(old.ep.NamedPorts, ep.NamedPorts) {
			return
		}
		e.DeleteEndpoint(ep.Key)
	}
	ee := &epEntry{ep: ep, rules: map[*ruleEntry]struct{}{}, entries: map[datapath.PolicyRule]int{}}
	e.endpoints[ep.Key] = ee
	for _, p := range e.policies {
		e.linkEndpoint(p, ee)
	}
}

// DeleteEndpoint removes a local endpoint.
func (e *Engine) DeleteEndpoint(key string) {
	ee, ok := e.endpoints[key]
	if !ok {
		return
	}
	delete(e.endpoints, key)
	for _, p := range e.policies {
		for _, re := range p.rules {
			delete(re.subjects, ee)
		}
		for _, en := range p.enfs {
			delete(en.subjects, ee)
		}
	}
}

// linkEndpoint applies the rules and enforcements of p that select ee.
func (e *Engine) linkEndpoint(p *polEntry, ee *epEntry) {
	for _, en := range p.enfs {
		if en.e.subject.Matches(ee.ep.Labels) {
			en.subjects[ee] = struct{}{}
			ee.enforce[b2i(en.e.ingress)][b2i(en.e.deny)]++
			ee.cached = nil
		}
	}
	for _, re := range p.rules {
		if re.r.subject.Matches(ee.ep.Labels) {
			re.subjects[ee] = struct{}{}
			ee.rules[re] = struct{}{}
			e.addRuleEntries(ee, re, 1)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// SetNamedPorts sets the named ports of the cluster's pods (for egress to
// a named port) and rebuilds the endpoints whose rules name ports.
func (e *Engine) SetNamedPorts(ports map[string][]schema.NamedPort) {
	e.namedPorts = ports
	for _, ee := range e.endpoints {
		for re := range ee.rules {
			if !re.r.ingress && hasNamedPort(re.r.ports) {
				e.rebuildEndpoint(ee)
				break
			}
		}
	}
}

func hasNamedPort(ps []portSpec) bool {
	return slices.ContainsFunc(ps, func(p portSpec) bool { return p.name != "" })
}

// rebuildEndpoint recomputes one endpoint's rule set from its rules.
func (e *Engine) rebuildEndpoint(ee *epEntry) {
	ee.entries = map[datapath.PolicyRule]int{}
	ee.cached = nil
	for re := range ee.rules {
		e.addRuleEntries(ee, re, 1)
	}
}

// addRuleEntries adds (delta 1) or removes (-1) every rule entry re gives
// ee.
func (e *Engine) addRuleEntries(ee *epEntry, re *ruleEntry, delta int) {
	if re.r.allPeers {
		e.addEntries(ee, re, []identity.NumericIdentity{0}, false, delta)
	}
	for _, s := range re.sels {
		ids := make([]identity.NumericIdentity, 0, len(s.ids))
		for id := range s.ids {
			ids = append(ids, id)
		}
		e.addEntries(ee, re, ids, byAddress(s.m), delta)
	}
}

// byAddress reports whether m's CIDR identities also select pods by
// address.
func byAddress(m matcher) bool {
	cm, ok := m.(cidrMatcher)
	return ok && cm.byAddress
}

// addEntries adds or removes the entries of rule re for peers ids on ee.
func (e *Engine) addEntries(ee *epEntry, re *ruleEntry, ids []identity.NumericIdentity, byAddr bool, delta int) {
	ports := e.resolvePorts(&re.r, ee)
	for _, id := range ids {
		for _, p := range ports {
			k := datapath.PolicyRule{Identity: id, Ingress: re.r.ingress, Proto: p.proto, Port: p.port, EndPort: p.endPort, Deny: re.r.deny,
				ByAddress: byAddr && !re.r.deny}
			n := ee.entries[k] + delta
			if n <= 0 {
				delete(ee.entries, k)
			} else {
				ee.entries[k] = n
			}
		}
	}
	ee.cached = nil
}

// resolvePorts turns a rule's ports into numeric ones for an endpoint:
// an ingress named port is the endpoint's own container port of that name,
// an egress one any cluster pod's.
func (e *Engine) resolvePorts(r *rule, ee *epEntry) []portSpec {
	if r.ports == nil {
		return []portSpec{{}}
	}
	out := make([]portSpec, 0, len(r.ports))
	for _, p := range r.ports {
		if p.name == "" {
			out = append(out, p)
			continue
		}
		named := e.namedPorts[p.name]
		if r.ingress {
			named = ee.ep.NamedPorts
		}
		for _, np := range named {
			proto, err := ParseProtocol(np.Protocol, ProtoTCP)
			if np.Name != p.name || err != nil || (p.proto != ProtoAny && p.proto != proto) {
				continue
			}
			ps := portSpec{proto: proto, port: np.Port}
			if !slices.Contains(out, ps) {
				out = append(out, ps)
			}
		}
	}
	return out
}

// EndpointPolicy returns the result for endpoint key.
func (e *Engine) EndpointPolicy(key string) (datapath.EndpointPolicy, bool) {
	p, _, ok := e.EndpointPolicyGen(key)
	return p, ok
}

// EndpointPolicyGen returns the result for endpoint key and its
// generation: equal generations of one endpoint mean equal results.
func (e *Engine) EndpointPolicyGen(key string) (datapath.EndpointPolicy, uint64, bool) {
	ee, ok := e.endpoints[key]
	if !ok {
		return datapath.EndpointPolicy{}, 0, false
	}
	if ee.cached == nil {
		p := e.build(ee)
		ee.cached = &p
		ee.gen = e.nextGen()
	}
	return *ee.cached, ee.gen, true
}

// nextGen returns a generation never returned before (across endpoints, so
// a re-created endpoint never repeats an old one).
func (e *Engine) nextGen() uint64 {
	e.gen++
	return e.gen
}

// Endpoints returns the keys of the known endpoints.
func (e *Engine) Endpoints() []string {
	out := make([]string, 0, len(e.endpoints))
	for k := range e.endpoints {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (e *Engine) build(ee *epEntry) datapath.EndpointPolicy {
	p := datapath.EndpointPolicy{Identity: ee.ep.ID}
	rules := make([]datapath.PolicyRule, 0, len(ee.entries)+2)
	for k := range ee.entries {
		rules = append(rules, k)
	}
	for dir := range 2 {
		allow, denyOnly := ee.enforce[dir][0], ee.enforce[dir][1]
		enforced := allow+denyOnly > 0
		if dir == 1 {
			p.EnforceIngress = enforced
		} else {
			p.EnforceEgress = enforced
		}
		if allow == 0 && denyOnly > 0 { // deny rules only: the rest is allowed
			rules = append(rules, datapath.PolicyRule{Ingress: dir == 1})
		}
	}
	p.Rules = SortRules(slices.Compact(SortRules(rules)))
	return p
}

// SortRules sorts rules in place (ingress first, then by identity,
// protocol, port, end port, allow before deny) and returns them.
func SortRules(rs []datapath.PolicyRule) []datapath.PolicyRule {
	slices.SortFunc(rs, func(a, b datapath.PolicyRule) int {
		return cmp.Or(-cmp.Compare(b2i(a.Ingress), b2i(b.Ingress)), cmp.Compare(a.Identity, b.Identity),
			cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port), cmp.Compare(a.EndPort, b.EndPort),
			cmp.Compare(b2i(a.Deny), b2i(b.Deny)), cmp.Compare(b2i(a.ByAddress), b2i(b.ByAddress)))
	})
	return rs
}
