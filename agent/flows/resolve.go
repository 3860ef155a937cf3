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
	ends  map[endKey]flowapi.Endpoint // for sn, without ports
	ids   map[uint32]idInfo           // for sn
	cidrs []state.CIDRIdentityRow     // of sn, read on first need
	read  bool                        // cidrs was read
}

type endKey struct {
	addr netip.Addr
	id   uint32
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
	r.ends, r.ids = map[endKey]flowapi.Endpoint{}, map[uint32]idInfo{}
	r.cidrs, r.read = nil, false
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
