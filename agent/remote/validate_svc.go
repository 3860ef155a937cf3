package remote

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"

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

// maxSharedPorts bounds the port configurations a validator shares.
const maxSharedPorts = 1 << 10

// sharedPorts gives equal port configurations of a peer's services one
// map: most services and backends have the same few ports ({"http": TCP
// 80}), and a decoded configuration is two allocations (a map of one
// entry is about 260 bytes, its L4Addr 24). Port configurations are never
// modified once decoded (the validator, the sink and the tables only read
// them), which makes sharing them safe. At most maxSharedPorts are
// remembered: the set is emptied when full (the maps given out stay
// valid), so that a peer writing ever new ports cannot grow it.
type sharedPorts map[string]schema.PortConfiguration

// share replaces each port configuration of m by the shared one equal
// to it.
func (s *sharedPorts) share(m map[string]schema.PortConfiguration) {
	var buf []byte
	for ip, pc := range m {
		if len(pc) == 0 || len(pc) > 8 { // nothing to share; rare, and a long key
			continue
		}
		buf = portsKey(buf[:0], pc)
		if shared, ok := (*s)[string(buf)]; ok {
			m[ip] = shared
			continue
		}
		if *s == nil || len(*s) >= maxSharedPorts {
			*s = sharedPorts{}
		}
		(*s)[string(buf)] = pc
	}
}

// portsKey appends to buf a form of pc that equal configurations share
// and others do not: the names in order, each with its protocol and
// port, a nil L4Addr as such.
func portsKey(buf []byte, pc schema.PortConfiguration) []byte {
	names := make([]string, 0, len(pc))
	for name := range pc {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		buf = strconv.AppendQuote(buf, name)
		if a := pc[name]; a == nil {
			buf = append(buf, "nil;"...)
		} else {
			buf = strconv.AppendQuote(buf, a.Protocol)
			buf = strconv.AppendUint(buf, uint64(a.Port), 10)
			buf = append(buf, ';')
		}
	}
	return buf
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
	v.ports.share(cs.Frontends)
	v.ports.share(cs.Backends)
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
