package remote

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// maxBackends bounds the backends of one service of a peer.
const maxBackends = 1 << 14

// svcRec is a peer's service as the validator keeps it: as the peer wrote
// it, and the backends the sink was last given (those that lie in the
// peer's nodes).
type svcRec struct {
	cs   schema.ClusterService
	sent []string // sorted backend addresses the sink has
}

func (v *validator) upsertService(key string, value []byte) {
	cluster, ns, name, err := v.paths.ParseServiceKey(key)
	switch {
	case err != nil:
		v.rej.reject(KindServices, ReasonMalformed, key, err.Error())
		return
	case cluster != v.peer:
		v.rej.reject(KindServices, ReasonForeignCluster, key, "cluster "+truncate(cluster))
		return
	}
	cs, err := v.paths.DecodeClusterService(key, value)
	reason := ReasonMalformed
	if err == nil && cs.ClusterID != uint32(v.id) {
		err, reason = fmt.Errorf("service has cluster ID %d, the peer's is %d", cs.ClusterID, v.id), ReasonWrongClusterID
	}
	if err == nil && (cs.Namespace != ns || cs.Name != name || cs.Cluster != cluster) {
		err = fmt.Errorf("the value names service %s/%s/%s, the key %s/%s/%s", truncate(cs.Cluster), truncate(cs.Namespace), truncate(cs.Name), cluster, ns, name)
	}
	if err == nil {
		if err = checkNames(ns, name); err != nil {
			reason = ReasonBadName
		} else if len(cs.Backends) > maxBackends {
			err = fmt.Errorf("%d backends, at most %d", len(cs.Backends), maxBackends)
		}
	}
	if err != nil {
		v.rej.reject(KindServices, reason, key, err.Error())
		v.deleteService(key)
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	rec := v.services[key]
	rec.cs = cs
	v.services[key] = rec
	v.evalServiceLocked(key, true)
}

// evalServiceLocked gives the sink the service with only the backends
// that lie in a pod CIDR of the peer's nodes or are one of their
// addresses; the others are rejected (counted when the peer wrote them,
// changed is set) and left out, and come back when a node holds them.
func (v *validator) evalServiceLocked(key string, changed bool) {
	rec := v.services[key]
	good := make(map[string]schema.PortConfiguration, len(rec.cs.Backends))
	var bad []string
	for ip, ports := range rec.cs.Backends {
		if a, err := netip.ParseAddr(ip); err == nil && v.holdsLocked(a.Unmap()) {
			good[ip] = ports
		} else {
			bad = append(bad, ip)
		}
	}
	sent := make([]string, 0, len(good))
	for ip := range good {
		sent = append(sent, ip)
	}
	sort.Strings(sent)
	if changed || rec.sent == nil || !slices.Equal(sent, rec.sent) {
		cs := rec.cs
		if len(bad) > 0 { // else the peer's own map, shared: neither side changes it
			cs.Backends = good
		}
		v.sink.UpsertService(v.peer, cs)
	}
	rec.sent = sent
	v.services[key] = rec
	if changed && len(bad) > 0 {
		sort.Strings(bad)
		v.rej.reject(KindServices, ReasonBadBackend, key, fmt.Sprintf("%d backends left out, first %s: in no pod CIDR and no address of %s's nodes", len(bad), truncate(bad[0]), v.peer))
	}
}

// holdsLocked reports whether a is in a pod CIDR of the peer's nodes or
// is one of their addresses.
func (v *validator) holdsLocked(a netip.Addr) bool {
	if _, ok := v.ownerLocked(netip.PrefixFrom(a, a.BitLen())); ok {
		return true
	}
	return v.isNodeAddressLocked(a)
}

func (v *validator) isNodeAddressLocked(a netip.Addr) bool {
	for _, n := range v.nodes {
		for _, na := range n.addrs {
			if na == a {
				return true
			}
		}
	}
	return false
}

// recheckServicesLocked re-evaluates every service after a node change.
func (v *validator) recheckServicesLocked() {
	for key := range v.services {
		v.evalServiceLocked(key, false)
	}
}

func (v *validator) deleteService(key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	rec, ok := v.services[key]
	if !ok {
		return
	}
	delete(v.services, key)
	v.sink.DeleteService(v.peer, rec.cs.Namespace, rec.cs.Name)
}

// drainServices removes every service of the peer from the sink (the peer
// stopped exporting ClusterServices).
func (v *validator) drainServices() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for key, rec := range v.services {
		delete(v.services, key)
		v.sink.DeleteService(v.peer, rec.cs.Namespace, rec.cs.Name)
	}
}
