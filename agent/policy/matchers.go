package policy

import (
	"net/netip"
	"strings"

	"github.com/clustermesh/clustermesh/identity"
)

// matcher selects identities. key identifies equal matchers, so that the
// selector cache holds each distinct one once.
type matcher interface {
	matches(id *Identity) bool
	key() string
}

// labelMatcher selects identities by their labels.
type labelMatcher struct{ sel identity.Selector }

func (m labelMatcher) matches(id *Identity) bool { return m.sel.Matches(id.Labels) }
func (m labelMatcher) key() string               { return "labels:" + m.sel.String() }

// clusterEntity is the "cluster" entity: every identity of the local
// cluster, and the reserved identities of nodes and unmanaged endpoints
// (as Cilium defines it).
type clusterEntity struct{ cluster string }

var clusterReserved = map[identity.NumericIdentity]bool{
	identity.ReservedHost: true, identity.ReservedRemoteNode: true, identity.ReservedInit: true,
	identity.ReservedHealth: true, identity.ReservedUnmanaged: true, identity.ReservedKubeAPIServer: true,
	identity.ReservedIngress: true,
}

func (m clusterEntity) matches(id *Identity) bool {
	if clusterReserved[id.ID] {
		return true
	}
	l, ok := id.Labels.Get(identity.ClusterLabelKey)
	return ok && l.Value == m.cluster
}
func (m clusterEntity) key() string { return "entity:cluster:" + m.cluster }

// cidrMatcher selects the CIDR identities inside prefix and outside every
// exception.
type cidrMatcher struct {
	prefix netip.Prefix
	except []netip.Prefix
	// byAddress: the rule also selects pods whose address is inside
	// (Kubernetes NetworkPolicy ipBlock); see datapath.PolicyRule.ByAddress.
	byAddress bool
}

func within(inner, outer netip.Prefix) bool {
	return inner.Bits() >= outer.Bits() && outer.Contains(inner.Addr())
}

func (m cidrMatcher) matches(id *Identity) bool {
	if !id.Prefix.IsValid() || !within(id.Prefix, m.prefix) {
		return false
	}
	for _, e := range m.except {
		if within(id.Prefix, e) {
			return false
		}
	}
	return true
}

func (m cidrMatcher) key() string {
	var b strings.Builder
	if m.byAddress {
		b.WriteString("addr-")
	}
	b.WriteString("cidr:" + m.prefix.String())
	for _, e := range m.except {
		b.WriteString("!" + e.String())
	}
	return b.String()
}

// entityMatchers maps an entity name to its matcher; "all" is handled by
// the caller (every identity, the wildcard).
func entityMatcher(name, cluster string) (matcher, bool) {
	reserved := func(n string) matcher {
		sel, _ := identity.NewSelector(nil, []identity.Requirement{{Key: identity.SourceReserved + ":" + n, Operator: identity.OpExists}})
		return labelMatcher{sel}
	}
	switch name {
	case "world", "host", "remote-node", "init", "health", "unmanaged", "kube-apiserver", "ingress":
		return reserved(name), true
	case "cluster":
		return clusterEntity{cluster}, true
	}
	return nil, false
}
