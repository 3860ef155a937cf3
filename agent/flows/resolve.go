package flows

import (
	"net/netip"
	"strings"

	"github.com/clustermesh/clustermesh/agent/flowapi"
	"github.com/clustermesh/clustermesh/agent/state"
	"github.com/clustermesh/clustermesh/identity"
)

// Resolver names the end of a flow at addr whose identity the datapath
// found to be id. It is called on the Recorder's goroutine for every flow,
// twice: it must be cheap and must not block.
type Resolver interface {
	Resolve(addr netip.Addr, id uint32) flowapi.Endpoint
	// Service returns the translation of a flow of protocol proto (an IP
	// protocol number) to the Service frontend fe, whose backend (the
	// flow's destination) Resolve gave: the Service's name when known.
	// It is called for the flows socket load balancing translated, with
	// the same constraints; the result may be shared between flows and
	// must not be modified.
	Service(fe netip.AddrPort, proto uint8, backend *flowapi.Endpoint) *flowapi.ServiceTranslation
}

// StateResolver resolves from the agent's state: the ipcache (pods of every
// cluster), this node's attachments (its pods before their IPs are
// reported), the nodes, the identities and the policies' CIDR identities.
// Results are cached for as long as the state does not change. It is not
// safe for concurrent use.
type StateResolver struct {
	st      *state.State
	cluster string // the local cluster, of this node's attachments and CIDR identities

	sn    *state.Snapshot
	ends  map[endKey]flowapi.Endpoint            // for sn, without ports
	ids   map[uint32]idInfo                      // for sn
	svcs  map[svcKey]*flowapi.ServiceTranslation // for sn
	cidrs []state.CIDRIdentityRow                // of sn, read on first need
	read  bool                                   // cidrs was read
}

type endKey struct {
	addr netip.Addr
	id   uint32
}

// svcKey is a translation's key: the frontend, the backend and its
// identity (the backend's cluster follows from them in one snapshot).
type svcKey struct {
	fe, backend netip.AddrPort
	backendID   uint32
	proto       uint8
}

type idInfo struct {
	cluster, reserved string
	labels            []string
	known             bool
}

// maxCached bounds the cache of resolved ends (a flood of spoofed sources
// must not grow it without bound): it is emptied when full.
const maxCached = 4096

// NewStateResolver returns a resolver of st; cluster is the local
// cluster's name.
func NewStateResolver(st *state.State, cluster string) *StateResolver {
	return &StateResolver{st: st, cluster: cluster}
}

// Resolve implements Resolver.
func (r *StateResolver) Resolve(addr netip.Addr, id uint32) flowapi.Endpoint {
	r.refresh()
	addr = addr.Unmap()
	k := endKey{addr, id}
	if e, ok := r.ends[k]; ok {
		return e
	}
	e := r.resolve(addr, id)
	if len(r.ends) >= maxCached {
		clear(r.ends)
	}
	r.ends[k] = e
	return e
}

// refresh takes a new snapshot, and drops the caches, when the state
// changed since the last one.
func (r *StateResolver) refresh() {
	if r.sn != nil {
		select {
		case <-r.sn.Changed():
		default:
			return
		}
	}
	r.sn = r.st.Snapshot()
	r.ends, r.ids, r.svcs = map[endKey]flowapi.Endpoint{}, map[uint32]idInfo{}, map[svcKey]*flowapi.ServiceTranslation{}
	r.cidrs, r.read = nil, false
}

// Service implements Resolver: the Service is the local one (the
// importing cluster's copy of a global Service) with a frontend at fe for
// proto. Translations are cached like ends.
func (r *StateResolver) Service(fe netip.AddrPort, proto uint8, backend *flowapi.Endpoint) *flowapi.ServiceTranslation {
	r.refresh()
	fe = netip.AddrPortFrom(fe.Addr().Unmap(), fe.Port())
	k := svcKey{fe: fe, backend: netip.AddrPortFrom(backend.IP, backend.Port), backendID: backend.Identity, proto: proto}
	if st, ok := r.svcs[k]; ok {
		return st
	}
	st := &flowapi.ServiceTranslation{Frontend: fe, Backend: k.backend, BackendCluster: backend.Cluster}
	st.Namespace, st.Name = r.serviceAt(fe, proto)
	if len(r.svcs) >= maxCached {
		clear(r.svcs)
	}
	r.svcs[k] = st
	return st
}

// serviceAt names the local Service with a frontend at fe for proto, or
// returns "", "".
func (r *StateResolver) serviceAt(fe netip.AddrPort, proto uint8) (namespace, name string) {
	protoName := flowapi.Protocol(proto).String()
	for _, ls := range r.sn.LocalServicesWithAddr(fe.Addr()) {
		for _, f := range ls.Frontends {
			if f.Addr.Unmap() == fe.Addr() && f.Port == fe.Port() && strings.EqualFold(f.Protocol, protoName) {
				return ls.Namespace, ls.Name
			}
		}
	}
	return "", ""
}

func (r *StateResolver) resolve(addr netip.Addr, id uint32) flowapi.Endpoint {
	e := flowapi.Endpoint{IP: addr, Identity: id}
	if row, ok := r.sn.LookupIP(addr); ok && row.Pod != "" && row.Prefix.Bits() == addr.BitLen() {
		e.Cluster, e.Namespace, e.Pod = row.Cluster, row.Namespace, row.Pod
	} else if ats := r.sn.AttachmentsWithIP(addr); len(ats) > 0 {
		e.Cluster, e.Namespace, e.Pod = r.cluster, ats[0].Namespace, ats[0].Pod
	} else if nodes := r.sn.NodesWithAddr(addr); len(nodes) > 0 {
		e.Cluster, e.Node = nodes[0].Cluster, nodes[0].Name
	}
	info := r.identity(id)
	e.Reserved, e.Labels = info.reserved, info.labels
	if e.Cluster == "" {
		e.Cluster = info.cluster
	}
	if !info.known && e.Pod == "" {
		if p, ok := r.cidrOf(addr, id); ok {
			e.CIDR, e.Labels = p.String(), []string{"cidr:" + p.String()}
			if e.Cluster == "" {
				e.Cluster = r.cluster
			}
		}
	}
	return e
}

// identity returns what the state knows of id.
func (r *StateResolver) identity(id uint32) idInfo {
	if info, ok := r.ids[id]; ok {
		return info
	}
	var info idInfo
	if name, ok := identity.ReservedName(identity.NumericIdentity(id)); ok {
		info = idInfo{reserved: name, known: true}
		if id != uint32(identity.IdentityUnknown) {
			info.labels = []string{identity.SourceReserved + ":" + name}
		}
	} else if row, ok := r.sn.Identity(identity.NumericIdentity(id)); ok {
		info = idInfo{cluster: row.Cluster, labels: splitLabels(row.LabelsKey), known: true}
	}
	r.ids[id] = info
	return info
}

// cidrOf returns the longest prefix of a CIDR identity id holding addr.
func (r *StateResolver) cidrOf(addr netip.Addr, id uint32) (netip.Prefix, bool) {
	if !r.read {
		r.cidrs, r.read = r.sn.CIDRIdentities(), true
	}
	var best netip.Prefix
	for _, c := range r.cidrs {
		if uint32(c.ID) == id && c.Prefix.Contains(addr) && (!best.IsValid() || c.Prefix.Bits() > best.Bits()) {
			best = c.Prefix
		}
	}
	return best, best.IsValid()
}

// splitLabels splits the kvstore form "k8s:a=b;k8s:c=d;" of a label set.
func splitLabels(key string) []string {
	var out []string
	for l := range strings.SplitSeq(key, ";") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}
