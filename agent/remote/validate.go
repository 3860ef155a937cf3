package remote

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"unique"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Reasons for rejecting remote data.
const (
	ReasonMalformed       = "malformed"
	ReasonForeignCluster  = "written under another cluster's name"
	ReasonWrongClusterID  = "wrong cluster ID"
	ReasonOutsideRange    = "identity outside the peer's range"
	ReasonReserved        = "reserved identity"
	ReasonNoClusterLabel  = "identity without the peer's cluster label"
	ReasonOutsideNodeCIDR = "ip outside the peer's pod CIDRs"
)

// validator checks one peer's data and forwards what passes to the sink.
// Each kind's methods are called from that kind's goroutine; mu guards the
// state shared between nodes and ip entries.
type validator struct {
	peer   string
	id     identity.ClusterID
	layout identity.Layout
	paths  schema.Paths
	sink   Sink
	rej    *rejections

	mu         sync.Mutex
	nodeCIDRs  map[string][]netip.Prefix       // node name → pod CIDRs
	lastCIDR   netip.Prefix                    // a pod CIDR of nodeCIDRs that insideLocked last matched, or the zero Prefix
	ips        map[netip.Prefix]acceptedIP     // accepted ip entries
	ipExtra    map[netip.Prefix]ipExtra        // what acceptedIP lacks, for the entries that have it
	quarantine map[netip.Prefix]schema.IPEntry // valid but outside every node's pod CIDRs
	known      map[Kind]map[string]struct{}    // accepted keys per kind (but ip entries: ips)
}

func newValidator(peer string, id identity.ClusterID, layout identity.Layout, paths schema.Paths, sink Sink, rej *rejections) *validator {
	v := &validator{peer: peer, id: id, layout: layout, paths: paths, sink: sink, rej: rej,
		nodeCIDRs: map[string][]netip.Prefix{}, ips: map[netip.Prefix]acceptedIP{}, ipExtra: map[netip.Prefix]ipExtra{},
		quarantine: map[netip.Prefix]schema.IPEntry{}, known: map[Kind]map[string]struct{}{}}
	for _, k := range Kinds {
		v.known[k] = map[string]struct{}{}
	}
	return v
}

// accepted records (or forgets) an accepted key and reports whether it was
// known before.
func (v *validator) accepted(kind Kind, key string, ok bool) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, had := v.known[kind][key]
	if ok {
		v.known[kind][key] = struct{}{}
	} else {
		delete(v.known[kind], key)
	}
	return had
}

func (v *validator) entries(kind Kind) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if kind == KindIPs {
		return len(v.ips)
	}
	return len(v.known[kind])
}

// Nodes.

func (v *validator) upsertNode(key string, value []byte) {
	cluster, name, err := v.paths.ParseNodeKey(key)
	switch {
	case err != nil:
		v.rej.reject(KindNodes, ReasonMalformed, key, err.Error())
		return
	case cluster != v.peer:
		v.rej.reject(KindNodes, ReasonForeignCluster, key, "cluster "+cluster)
		return
	}
	n, err := v.paths.DecodeNode(key, value)
	if err == nil && n.ClusterID != uint32(v.id) {
		err = fmt.Errorf("node %s has cluster ID %d, the peer's is %d", name, n.ClusterID, v.id)
		v.rej.reject(KindNodes, ReasonWrongClusterID, key, err.Error())
	} else if err != nil {
		v.rej.reject(KindNodes, ReasonMalformed, key, err.Error())
	}
	if err != nil {
		v.deleteNode(key) // the peer no longer asserts a valid node here
		return
	}
	v.accepted(KindNodes, key, true)
	v.mu.Lock()
	v.nodeCIDRs[name] = n.PodCIDRs()
	v.lastCIDR = netip.Prefix{}
	v.mu.Unlock()
	v.sink.UpsertNode(v.peer, n)
	v.recheckIPs()
}

func (v *validator) deleteNode(key string) {
	if !v.accepted(KindNodes, key, false) {
		return
	}
	_, name, _ := v.paths.ParseNodeKey(key)
	v.mu.Lock()
	delete(v.nodeCIDRs, name)
	v.lastCIDR = netip.Prefix{}
	v.mu.Unlock()
	v.sink.DeleteNode(v.peer, name)
	v.recheckIPs()
}

// Identities.

func (v *validator) upsertIdentity(key string, value []byte) {
	id, labels, reason, err := v.checkIdentity(key, value)
	if err != nil {
		v.rej.reject(KindIdentities, reason, key, err.Error())
		v.deleteIdentity(key)
		return
	}
	v.accepted(KindIdentities, key, true)
	v.sink.UpsertIdentity(v.peer, id, labels)
}

func (v *validator) checkIdentity(key string, value []byte) (identity.NumericIdentity, identity.Labels, string, error) {
	in, err := v.paths.DecodeIdentity(key, value)
	if err != nil {
		return 0, identity.Labels{}, ReasonMalformed, err
	}
	id := identity.NumericIdentity(in.ID)
	if identity.IsReserved(id) {
		return 0, identity.Labels{}, ReasonReserved, fmt.Errorf("identity %d is reserved", id)
	}
	if !v.layout.Owns(v.id, id) {
		first, last := v.layout.Range(v.id)
		return 0, identity.Labels{}, ReasonOutsideRange, fmt.Errorf("identity %d is outside %s's range %d-%d", id, v.peer, first, last)
	}
	labels, err := identity.ParseKVStoreLabels(in.Labels)
	if err != nil {
		return 0, identity.Labels{}, ReasonMalformed, err
	}
	if l, ok := labels.Get(identity.ClusterLabelKey); !ok || l.Value != v.peer {
		return 0, identity.Labels{}, ReasonNoClusterLabel, fmt.Errorf("identity %d lacks %s=%s", id, identity.ClusterLabelKey, v.peer)
	}
	return id, labels, "", nil
}

func (v *validator) deleteIdentity(key string) {
	if !v.accepted(KindIdentities, key, false) {
		return
	}
	id, _ := v.paths.ParseIdentityKey(key)
	v.sink.DeleteIdentity(v.peer, identity.NumericIdentity(id))
}

// IP entries.

func (v *validator) upsertIP(key string, value []byte) {
	prefix, err := v.paths.ParseIPPrefixKey(key)
	if err != nil {
		v.rej.reject(KindIPs, ReasonMalformed, key, err.Error())
		return
	}
	e, err := v.paths.DecodeIPEntry(key, value)
	if err != nil {
		v.rej.reject(KindIPs, ReasonMalformed, key, err.Error())
		v.deleteIP(key)
		return
	}
	if id := identity.NumericIdentity(e.ID); identity.IsReserved(id) || !v.layout.Owns(v.id, id) {
		v.rej.reject(KindIPs, ReasonOutsideRange, key, fmt.Sprintf("ip %s points to identity %d, not one of %s's", prefix, id, v.peer))
		v.deleteIP(key)
		return
	}
	v.mu.Lock()
	if !v.insideLocked(prefix) {
		had := v.forgetIPLocked(prefix)
		v.quarantine[prefix] = e
		v.mu.Unlock()
		v.rej.reject(KindIPs, ReasonOutsideNodeCIDR, key, fmt.Sprintf("%s is in no pod CIDR of %s's nodes", prefix, v.peer))
		if had {
			v.sink.DeleteIP(v.peer, prefix)
		}
		return
	}
	delete(v.quarantine, prefix)
	v.acceptIPLocked(prefix, e)
	v.mu.Unlock()
	v.sink.UpsertIP(v.peer, prefix, e)
}

func (v *validator) deleteIP(key string) {
	prefix, err := v.paths.ParseIPPrefixKey(key)
	if err != nil {
		return
	}
	v.mu.Lock()
	delete(v.quarantine, prefix)
	had := v.forgetIPLocked(prefix)
	v.mu.Unlock()
	if had {
		v.sink.DeleteIP(v.peer, prefix)
	}
}

// acceptedIP is what the validator keeps of an accepted ip entry: enough to
// put it back in quarantine, and accept it again, if its node goes and
// comes back. It is kept small, for there is one per remote endpoint: the
// host and namespace are interned (unique.Handle), the pod name shares its
// bytes with what the sink keeps, and the rare service account and named
// ports live in the validator's ipExtra map instead.
type acceptedIP struct {
	pod  string
	host unique.Handle[netip.Addr]
	ns   unique.Handle[string]
	id   uint32
	key  uint8
}

// ipExtra is the part of an accepted ip entry that most entries lack.
type ipExtra struct {
	sa    string
	ports []schema.NamedPort
}

// acceptIPLocked records e as the accepted entry of prefix.
func (v *validator) acceptIPLocked(prefix netip.Prefix, e schema.IPEntry) {
	h, _ := netip.AddrFromSlice(e.HostIP)
	v.ips[prefix] = acceptedIP{pod: e.K8sPodName, host: unique.Make(h.Unmap()), ns: unique.Make(e.K8sNamespace), id: e.ID, key: e.Key}
	if e.K8sServiceAccount != "" || len(e.NamedPorts) > 0 {
		v.ipExtra[prefix] = ipExtra{sa: e.K8sServiceAccount, ports: e.NamedPorts}
	} else {
		delete(v.ipExtra, prefix)
	}
}

// forgetIPLocked drops the accepted entry of prefix and reports whether
// there was one.
func (v *validator) forgetIPLocked(prefix netip.Prefix) bool {
	_, had := v.ips[prefix]
	delete(v.ips, prefix)
	delete(v.ipExtra, prefix)
	return had
}

// acceptedEntryLocked rebuilds the accepted entry a of prefix.
func (v *validator) acceptedEntryLocked(prefix netip.Prefix, a acceptedIP) schema.IPEntry {
	x := v.ipExtra[prefix]
	e := schema.IPEntry{IP: net.IP(prefix.Addr().AsSlice()), ID: a.id, Key: a.key, K8sNamespace: a.ns.Value(), K8sPodName: a.pod,
		K8sServiceAccount: x.sa, NamedPorts: x.ports}
	if !prefix.IsSingleIP() {
		e.Mask = net.CIDRMask(prefix.Bits(), prefix.Addr().BitLen())
	}
	if h := a.host.Value(); h.IsValid() {
		e.HostIP = net.IP(h.AsSlice())
	}
	return e
}

// insideLocked reports whether prefix lies in a pod CIDR of the peer's
// nodes. Entries come in key order, so most fall in the CIDR that matched
// the one before: that one is tried first.
func (v *validator) insideLocked(prefix netip.Prefix) bool {
	if c := v.lastCIDR; c.IsValid() && c.Bits() <= prefix.Bits() && c.Contains(prefix.Addr()) {
		return true
	}
	for _, cidrs := range v.nodeCIDRs {
		for _, c := range cidrs {
			if c.Bits() <= prefix.Bits() && c.Contains(prefix.Addr()) {
				v.lastCIDR = c
				return true
			}
		}
	}
	return false
}

// recheckIPs accepts quarantined entries now inside a node CIDR and
// withdraws accepted ones no longer inside any.
func (v *validator) recheckIPs() {
	type change struct {
		prefix netip.Prefix
		e      schema.IPEntry
		accept bool
	}
	var changes []change
	v.mu.Lock()
	for p, e := range v.quarantine {
		if v.insideLocked(p) {
			delete(v.quarantine, p)
			v.acceptIPLocked(p, e)
			changes = append(changes, change{p, e, true})
		}
	}
	for p, a := range v.ips {
		if !v.insideLocked(p) {
			v.quarantine[p] = v.acceptedEntryLocked(p, a)
			v.forgetIPLocked(p)
			changes = append(changes, change{prefix: p})
		}
	}
	v.mu.Unlock()
	for _, c := range changes {
		if c.accept {
			v.sink.UpsertIP(v.peer, c.prefix, c.e)
		} else {
			v.sink.DeleteIP(v.peer, c.prefix)
		}
	}
}

// Services.

func (v *validator) upsertService(key string, value []byte) {
	cluster, _, _, err := v.paths.ParseServiceKey(key)
	switch {
	case err != nil:
		v.rej.reject(KindServices, ReasonMalformed, key, err.Error())
		return
	case cluster != v.peer:
		v.rej.reject(KindServices, ReasonForeignCluster, key, "cluster "+cluster)
		return
	}
	cs, err := v.paths.DecodeClusterService(key, value)
	if err == nil && cs.ClusterID != uint32(v.id) {
		v.rej.reject(KindServices, ReasonWrongClusterID, key, fmt.Sprintf("service has cluster ID %d, the peer's is %d", cs.ClusterID, v.id))
		v.deleteService(key)
		return
	}
	if err != nil {
		v.rej.reject(KindServices, ReasonMalformed, key, err.Error())
		v.deleteService(key)
		return
	}
	v.accepted(KindServices, key, true)
	v.sink.UpsertService(v.peer, cs)
}

func (v *validator) deleteService(key string) {
	if !v.accepted(KindServices, key, false) {
		return
	}
	_, ns, name, _ := v.paths.ParseServiceKey(key)
	v.sink.DeleteService(v.peer, ns, name)
}
