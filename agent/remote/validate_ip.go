package remote

import (
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"slices"
	"unique"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/clustermesh/clustermesh/identity"
	"github.com/clustermesh/clustermesh/kvstore/schema"
)

// Limits on what the validator keeps of a peer's ip entries.
const (
	// maxQuarantine bounds the entries of one peer kept while no node of
	// the peer holds them; beyond it they are rejected and forgotten.
	maxQuarantine = 1 << 16
	// maxNamedPorts bounds the named ports of one entry.
	maxNamedPorts = 256
)

// ReasonQuarantineFull rejects an entry no node holds when the peer already
// has maxQuarantine such entries.
const ReasonQuarantineFull = "too many ip entries outside the peer's nodes"

// ipIndex is the validator's record of a peer's ip entries: accepted ones,
// quarantined ones (valid, but no node of the peer holds them yet), and a
// bucket index (by /24, or /64 for IPv6) so that a node change re-checks
// only the entries inside that node's pod CIDRs. Guarded by validator.mu.
type ipIndex struct {
	ips        ipRecords
	quarantine ipRecords
	ipExtra    map[netip.Prefix]ipExtra // what acceptedIP lacks, for the entries that have it
	buckets    map[netip.Prefix]*bucket
	lastCIDR   netip.Prefix // the pod CIDR ownerLocked matched last (entries come in key order)
}

// bucket holds the indexed entries of one /24 (or /64): single IPv4
// addresses, nearly all of a peer's entries, as bits of a 256-bit set (a
// bit an entry, where a set of prefixes costs a 32-byte key and its slot,
// about 80 bytes an entry), anything else in a set of prefixes.
type bucket struct {
	v4    [4]uint64
	n4    int
	other map[netip.Prefix]struct{}
}

func (k *bucket) empty() bool { return k.n4 == 0 && len(k.other) == 0 }

// each calls f for every entry of the bucket b.
func (k *bucket) each(b netip.Prefix, f func(netip.Prefix)) {
	if k.n4 > 0 {
		a := b.Addr().As4()
		for w, word := range k.v4 {
			for word != 0 {
				i := bits.TrailingZeros64(word)
				word &= word - 1
				a[3] = byte(w*64 + i)
				f(netip.PrefixFrom(netip.AddrFrom4(a), 32))
			}
		}
	}
	for p := range k.other {
		f(p)
	}
}

func newIPIndex() ipIndex {
	v4 := newV4Records()
	return ipIndex{ips: newIPRecords(v4, false), quarantine: newIPRecords(v4, true),
		ipExtra: map[netip.Prefix]ipExtra{}, buckets: map[netip.Prefix]*bucket{}}
}

// ipRecords maps prefixes to records: single IPv4 addresses, nearly all
// of a peer's entries, in a v4Records the accepted and the quarantined
// entries share (about 45 bytes an entry where a map keyed by the 4 bytes
// took 75), anything else in a map by prefix. The accepted and the
// quarantined records of one validator are two views of one v4Records: a
// record is in one of them at most, and set moves it.
type ipRecords struct {
	v4         *v4Records
	quarantine bool // this view's records
	other      map[netip.Prefix]acceptedIP
}

func newIPRecords(v4 *v4Records, quarantine bool) ipRecords {
	return ipRecords{v4: v4, quarantine: quarantine, other: map[netip.Prefix]acceptedIP{}}
}

func (r ipRecords) get(p netip.Prefix) (acceptedIP, bool) {
	if p.Addr().Is4() && p.IsSingleIP() {
		return r.v4.get(p.Addr().As4(), r.quarantine)
	}
	a, ok := r.other[p]
	return a, ok
}

func (r ipRecords) set(p netip.Prefix, a acceptedIP) {
	if p.Addr().Is4() && p.IsSingleIP() {
		r.v4.set(p.Addr().As4(), r.quarantine, a)
		return
	}
	r.other[p] = a
}

func (r ipRecords) del(p netip.Prefix) {
	if p.Addr().Is4() && p.IsSingleIP() {
		r.v4.del(p.Addr().As4(), r.quarantine)
		return
	}
	delete(r.other, p)
}

func (r ipRecords) len() int { return r.v4.count(r.quarantine) + len(r.other) }

// v4Records holds the records of single IPv4 addresses by /24: a bitmap
// of the addresses present, one of those quarantined, and the records in
// the order of the addresses, without their key (a record's index is the
// number of addresses present below it). A peer's pod addresses are
// dense in its nodes' pod CIDRs, so the /24's own cost is shared by many
// entries.
type v4Records struct {
	blocks map[uint32]*v4Block // by the /24 (the address >> 8: a 32-bit key, which Go maps hash fastest)
	n      [2]int              // records by view: accepted, quarantined
}

type v4Block struct {
	present, quarantined [4]uint64
	recs                 []acceptedIP
}

func block24(a [4]byte) uint32 { return uint32(a[0])<<16 | uint32(a[1])<<8 | uint32(a[2]) }

func newV4Records() *v4Records { return &v4Records{blocks: map[uint32]*v4Block{}} }

func view(quarantine bool) int {
	if quarantine {
		return 1
	}
	return 0
}

// slot returns the word and bit of the last byte, and the index its
// record has (or would have) in recs.
func (k *v4Block) slot(last byte) (w int, bit uint64, i int) {
	w, bit = int(last/64), 1<<(last%64)
	for j := range w {
		i += bits.OnesCount64(k.present[j])
	}
	return w, bit, i + bits.OnesCount64(k.present[w]&(bit-1))
}

func (r *v4Records) get(a [4]byte, quarantine bool) (acceptedIP, bool) {
	k := r.blocks[block24(a)]
	if k == nil {
		return acceptedIP{}, false
	}
	w, bit, i := k.slot(a[3])
	if k.present[w]&bit == 0 || (k.quarantined[w]&bit != 0) != quarantine {
		return acceptedIP{}, false
	}
	return k.recs[i], true
}

// set records a in the view, moving it there from the other view.
func (r *v4Records) set(a [4]byte, quarantine bool, rec acceptedIP) {
	key := block24(a)
	k := r.blocks[key]
	if k == nil {
		k = &v4Block{}
		r.blocks[key] = k
	}
	w, bit, i := k.slot(a[3])
	if k.present[w]&bit != 0 {
		k.recs[i] = rec
		r.n[view(k.quarantined[w]&bit != 0)]--
	} else {
		if len(k.recs) == cap(k.recs) {
			// Grow by an eighth rather than double, up to the 256
			// addresses of a /24: a /24 of a large peer is nearly
			// full, and the slack is per entry.
			grown := make([]acceptedIP, len(k.recs), min(len(k.recs)+len(k.recs)/8+1, 256))
			copy(grown, k.recs)
			k.recs = grown
		}
		k.recs = slices.Insert(k.recs, i, rec)
		k.present[w] |= bit
	}
	if quarantine {
		k.quarantined[w] |= bit
	} else {
		k.quarantined[w] &^= bit
	}
	r.n[view(quarantine)]++
}

// del removes a's record from the view (not from the other view).
func (r *v4Records) del(a [4]byte, quarantine bool) {
	key := block24(a)
	k := r.blocks[key]
	if k == nil {
		return
	}
	w, bit, i := k.slot(a[3])
	if k.present[w]&bit == 0 || (k.quarantined[w]&bit != 0) != quarantine {
		return
	}
	k.recs = slices.Delete(k.recs, i, i+1)
	k.present[w] &^= bit
	k.quarantined[w] &^= bit
	r.n[view(quarantine)]--
	switch {
	case len(k.recs) == 0:
		delete(r.blocks, key)
	case cap(k.recs) > 2*len(k.recs)+4: // give back what entries left
		k.recs = slices.Clip(slices.Clone(k.recs))
	}
}

func (r *v4Records) count(quarantine bool) int { return r.n[view(quarantine)] }

func bucketBits(p netip.Prefix) int {
	if p.Addr().Is6() {
		return 64
	}
	return 24
}

func bucketOf(p netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(p.Addr(), min(bucketBits(p), p.Bits())).Masked()
}

func (x *ipIndex) indexLocked(p netip.Prefix) {
	b := bucketOf(p)
	k := x.buckets[b]
	if k == nil {
		k = &bucket{}
		x.buckets[b] = k
	}
	if p.Addr().Is4() && p.IsSingleIP() {
		i := p.Addr().As4()[3]
		if k.v4[i/64]&(1<<(i%64)) == 0 {
			k.v4[i/64] |= 1 << (i % 64)
			k.n4++
		}
		return
	}
	if k.other == nil {
		k.other = map[netip.Prefix]struct{}{}
	}
	k.other[p] = struct{}{}
}

func (x *ipIndex) unindexLocked(p netip.Prefix) {
	b := bucketOf(p)
	k := x.buckets[b]
	if k == nil {
		return
	}
	if p.Addr().Is4() && p.IsSingleIP() {
		i := p.Addr().As4()[3]
		if k.v4[i/64]&(1<<(i%64)) != 0 {
			k.v4[i/64] &^= 1 << (i % 64)
			k.n4--
		}
	} else {
		delete(k.other, p)
	}
	if k.empty() {
		delete(x.buckets, b)
	}
}

// acceptedIP is what the validator keeps of an ip entry: enough to give it
// to the sink again. It is kept small, for there is one per remote
// endpoint: the host and namespace are interned (unique.Handle), the pod
// name shares its bytes with what the sink keeps, and the rare service
// account and named ports live in ipExtra instead. Names are checked
// Kubernetes names first, so a record's size does not depend on what the
// peer sends.
type acceptedIP struct {
	pod  string
	host unique.Handle[netip.Addr]
	ns   unique.Handle[string]
	id   uint32
	key  uint8
}

// ipExtra is the part of an ip entry that most entries lack (Metadata is
// written only by Cilium agents in kvstore identity mode).
type ipExtra struct {
	sa    string
	meta  string
	ports []schema.NamedPort
}

func (v *validator) recordOf(prefix netip.Prefix, e schema.IPEntry) acceptedIP {
	h, _ := netip.AddrFromSlice(e.HostIP)
	if e.K8sServiceAccount != "" || e.Metadata != "" || len(e.NamedPorts) > 0 {
		v.ipExtra[prefix] = ipExtra{sa: e.K8sServiceAccount, meta: e.Metadata, ports: e.NamedPorts}
	} else {
		delete(v.ipExtra, prefix)
	}
	return acceptedIP{pod: e.K8sPodName, host: unique.Make(h.Unmap()), ns: unique.Make(e.K8sNamespace), id: e.ID, key: e.Key}
}

// entryLocked rebuilds the entry of prefix from its record.
func (v *validator) entryLocked(prefix netip.Prefix, a acceptedIP) schema.IPEntry {
	x := v.ipExtra[prefix]
	e := schema.IPEntry{IP: net.IP(prefix.Addr().AsSlice()), ID: a.id, Key: a.key, K8sNamespace: a.ns.Value(), K8sPodName: a.pod,
		K8sServiceAccount: x.sa, NamedPorts: x.ports, Metadata: x.meta}
	if !prefix.IsSingleIP() {
		e.Mask = net.CIDRMask(prefix.Bits(), prefix.Addr().BitLen())
	}
	if h := a.host.Value(); h.IsValid() {
		e.HostIP = net.IP(h.AsSlice())
	}
	return e
}

// ownerLocked returns the peer's node whose pod CIDRs hold prefix: a
// lookup per prefix length in the CIDR index. Entries come in key order,
// so most fall in the CIDR that matched the one before: it is tried first.
func (v *validator) ownerLocked(prefix netip.Prefix) (nodeInfo, bool) {
	if c := v.lastCIDR; c.IsValid() && c.Bits() <= prefix.Bits() && c.Contains(prefix.Addr()) {
		if name, ok := v.cidrIndex[c]; ok {
			return v.nodes[name], true
		}
	}
	for bits := prefix.Bits(); bits >= 0; bits-- {
		c := netip.PrefixFrom(prefix.Addr(), bits).Masked()
		if name, ok := v.cidrIndex[c]; ok {
			v.lastCIDR = c
			return v.nodes[name], true
		}
	}
	return nodeInfo{}, false
}

// acceptableLocked says why an entry cannot be accepted now ("" if it
// can): it must lie in a pod CIDR of one of the peer's nodes, and its host
// (the tunnel endpoint), when set, must be an address of that node.
func (v *validator) acceptableLocked(prefix netip.Prefix, host netip.Addr) (reason, detail string) {
	n, ok := v.ownerLocked(prefix)
	if !ok {
		return ReasonOutsideNodeCIDR, fmt.Sprintf("%s is in no pod CIDR of %s's nodes", prefix, v.peer)
	}
	if host.IsValid() {
		for _, a := range n.addrs {
			if a == host {
				return "", ""
			}
		}
		return ReasonBadHostIP, fmt.Sprintf("%s names host %s, which is not an address of the node whose pod CIDR holds it", prefix, host)
	}
	return "", ""
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
	if err := checkIPEntryNames(e); err != nil {
		v.rej.reject(KindIPs, ReasonBadName, key, err.Error())
		v.deleteIP(key)
		return
	}
	if s, ok := specialRange(prefix); ok {
		v.rej.reject(KindIPs, ReasonOutsideNodeCIDR, key, fmt.Sprintf("%s overlaps the special range %v", prefix, s))
		v.deleteIP(key)
		return
	}
	host, _ := netip.AddrFromSlice(e.HostIP)
	host = host.Unmap()
	v.mu.Lock()
	reason, detail := v.acceptableLocked(prefix, host)
	if reason == "" {
		v.quarantine.del(prefix)
		v.ips.set(prefix, v.recordOf(prefix, e))
		v.indexLocked(prefix)
		v.sink.UpsertIP(v.peer, prefix, e)
		v.mu.Unlock()
		return
	}
	_, had := v.ips.get(prefix)
	v.ips.del(prefix)
	_, queued := v.quarantine.get(prefix)
	if queued || v.quarantine.len() < maxQuarantine {
		v.quarantine.set(prefix, v.recordOf(prefix, e))
		v.indexLocked(prefix)
	} else {
		delete(v.ipExtra, prefix)
		v.unindexLocked(prefix)
		reason, detail = ReasonQuarantineFull, fmt.Sprintf("%s: %d entries of %s already wait for a node", detail, maxQuarantine, v.peer)
	}
	if had {
		v.sink.DeleteIP(v.peer, prefix)
	}
	v.mu.Unlock()
	v.rej.reject(KindIPs, reason, key, detail)
}

// checkIPEntryNames checks the names and named ports of an ip entry.
func checkIPEntryNames(e schema.IPEntry) error {
	if err := checkNames(e.K8sNamespace, e.K8sPodName, e.K8sServiceAccount); err != nil {
		return err
	}
	if len(e.NamedPorts) > maxNamedPorts {
		return fmt.Errorf("%d named ports, at most %d", len(e.NamedPorts), maxNamedPorts)
	}
	for _, p := range e.NamedPorts {
		if errs := validation.IsValidPortName(p.Name); len(errs) > 0 {
			return fmt.Errorf("named port %q: %s", truncate(p.Name), errs[0])
		}
	}
	return nil
}

func (v *validator) deleteIP(key string) {
	prefix, err := v.paths.ParseIPPrefixKey(key)
	if err != nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	_, had := v.ips.get(prefix)
	v.ips.del(prefix)
	v.quarantine.del(prefix)
	delete(v.ipExtra, prefix)
	v.unindexLocked(prefix)
	if had {
		v.sink.DeleteIP(v.peer, prefix)
	}
}

// recheck re-evaluates, after a node change, the ip entries inside the
// changed pod CIDRs (and every service): quarantined entries a node now
// holds are accepted, accepted ones no node holds any more are withdrawn.
// It runs under mu, so a concurrent delete of an entry reaches the sink
// before or after it, never in between.
func (v *validator) recheck(cidrs []netip.Prefix) {
	v.mu.Lock()
	defer v.mu.Unlock()
	recheckBucket := func(b netip.Prefix, k *bucket) {
		if k == nil {
			return
		}
		k.each(b, func(p netip.Prefix) {
			if a, ok := v.quarantine.get(p); ok {
				if reason, _ := v.acceptableLocked(p, a.host.Value()); reason == "" {
					v.quarantine.del(p)
					v.ips.set(p, a)
					v.sink.UpsertIP(v.peer, p, v.entryLocked(p, a))
				}
			} else if a, ok := v.ips.get(p); ok {
				if reason, _ := v.acceptableLocked(p, a.host.Value()); reason != "" {
					v.ips.del(p)
					v.quarantine.set(p, a)
					v.sink.DeleteIP(v.peer, p)
				}
			}
		})
	}
	seen := map[netip.Prefix]bool{}
	for _, c := range cidrs {
		if c.Bits() >= bucketBits(c) { // inside one bucket
			if b := bucketOf(c); !seen[b] {
				seen[b] = true
				recheckBucket(b, v.buckets[b])
			}
			continue
		}
		for b, k := range v.buckets { // wider than a bucket
			if c.Overlaps(b) && !seen[b] {
				seen[b] = true
				recheckBucket(b, k)
			}
		}
	}
	v.recheckServicesLocked()
}
