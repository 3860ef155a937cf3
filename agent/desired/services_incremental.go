package desired

import (
	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/agent/state"
)

// The services, one frontend at a time: ServicesAt is Services' value for
// one frontend, from the Services with an address of that frontend (an
// index lookup) and that Service's copies in other clusters; ServicesKeys
// the frontends a change of a joined table may change. A peer's changed
// export thus recomputes the frontends of one Service, not every Service.
// TestServicesAtMatchesTheJoin checks that they agree with Services.

// servicesTables are the tables Services joins.
var servicesTables = []string{state.TableLocalServices, state.TableServices, state.TableNodes}

// ServicesAt returns the entry Services has for the frontend k, if any.
func ServicesAt(sn *state.Snapshot, cluster string, k datapath.ServiceKey) (datapath.Service, bool) {
	rows := sn.LocalServicesWithAddr(k.Addr)
	for i := len(rows) - 1; i >= 0; i-- { // the last Service claiming k has it
		for _, fe := range rows[i].Frontends {
			if frontendKey(fe) == k {
				svc, ok := serviceEntries(sn, cluster, rows[i], map[string]addrSet{})[k]
				return svc, ok
			}
		}
	}
	return datapath.Service{}, false
}

// ServicesKeys adds to keys the frontends whose desired entry change c may
// have changed: a local Service's own (before and after), those of the
// local Service a peer's export copies, and, for a peer's node (which
// changes the addresses its backends may have), those of every Service
// the peer exports.
func ServicesKeys(sn *state.Snapshot, c state.Change, keys map[datapath.ServiceKey]struct{}) {
	of := func(namespace, name string) {
		if ls, ok := sn.LocalService(namespace, name); ok {
			for _, fe := range ls.Frontends {
				keys[frontendKey(fe)] = struct{}{}
			}
		}
	}
	switch c.Table {
	case state.TableLocalServices:
		for _, raw := range []any{c.Before, c.After} {
			if ls, ok := raw.(*state.LocalService); ok {
				for _, fe := range ls.Frontends {
					keys[frontendKey(fe)] = struct{}{}
				}
			}
		}
	case state.TableServices:
		for _, raw := range []any{c.Before, c.After} {
			if r, ok := raw.(*state.ServiceRow); ok {
				of(r.Namespace, r.Name)
			}
		}
	case state.TableNodes:
		clusters := map[string]bool{}
		for _, raw := range []any{c.Before, c.After} {
			if n, ok := raw.(*state.NodeRow); ok {
				clusters[n.Cluster] = true
			}
		}
		for cl := range clusters {
			for _, r := range sn.ServicesOf(cl) {
				of(r.Namespace, r.Name)
			}
		}
	}
}

// NewServicesSource returns the services' incremental source (see Source).
func NewServicesSource(st *state.State, cluster string) *Source[datapath.ServiceKey, datapath.Service] {
	return NewSource(st, servicesJoin{cluster: cluster}, servicesTables...)
}

// servicesJoin is Services, ServicesAt and ServicesKeys as a Join.
type servicesJoin struct{ cluster string }

func (j servicesJoin) All(sn *state.Snapshot) map[datapath.ServiceKey]datapath.Service {
	return Services(sn, j.cluster)
}

func (j servicesJoin) At(sn *state.Snapshot, k datapath.ServiceKey) (datapath.Service, bool) {
	return ServicesAt(sn, j.cluster, k)
}

func (servicesJoin) Keys(sn *state.Snapshot, c state.Change, keys map[datapath.ServiceKey]struct{}) {
	ServicesKeys(sn, c, keys)
}
