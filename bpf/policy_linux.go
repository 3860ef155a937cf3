package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
)

const (
	dirIngress = 0
	dirEgress  = 1

	policyMaskAnyProto = 1 << 17 // POLICY_MASK_ANY_PROTO
	policyMaskByAddr   = 1 << 18 // POLICY_MASK_BY_ADDR
)

// policyKey mirrors struct policy_key.
type policyKey struct {
	EpID     [2]byte // big endian
	Dir      uint8
	Gen      uint8
	Identity uint32
	Proto    uint8
	Plen     uint8
	Dport    [2]byte // big endian, masked to Plen bits
}

// policyValue mirrors struct policy_value.
type policyValue struct {
	Deny    uint8
	Pad     [7]uint8
	Packets uint64
}

// policyGenValue mirrors struct policy_gen_value.
type policyGenValue struct {
	Gen  uint8
	Pad  [3]uint8
	Mask [2]uint32 // by direction
}

func policyKeyOf(epID uint16, gen uint8, e PolicyEntry) policyKey {
	k := policyKey{Gen: gen, Identity: e.Identity, Dir: dirEgress, Proto: e.Proto, Plen: e.PortBits}
	binary.BigEndian.PutUint16(k.EpID[:], epID)
	binary.BigEndian.PutUint16(k.Dport[:], e.Port)
	if e.Ingress {
		k.Dir = dirIngress
	}
	return k
}

func (k policyKey) entry(v policyValue) (uint16, PolicyEntry) {
	e := PolicyEntry{
		Ingress:  k.Dir == dirIngress,
		Identity: k.Identity,
		Proto:    k.Proto,
		Port:     binary.BigEndian.Uint16(k.Dport[:]),
		PortBits: k.Plen,
		Deny:     v.Deny != 0,
		Packets:  v.Packets,
	}
	return binary.BigEndian.Uint16(k.EpID[:]), e
}

// policyMasks returns the kinds of entries present per direction, for the
// datapath to probe only those.
func policyMasks(entries []PolicyEntry) [2]uint32 {
	var m [2]uint32
	for _, e := range entries {
		dir := dirEgress
		if e.Ingress {
			dir = dirIngress
		}
		if e.Proto == 0 {
			m[dir] |= policyMaskAnyProto
		} else {
			m[dir] |= 1 << e.PortBits
		}
		if e.Identity&IdentityByAddress != 0 {
			m[dir] |= policyMaskByAddr
		}
	}
	return m
}

// epPolicy is what the kernel holds for one endpoint.
type epPolicy struct {
	gen     uint8             // active generation, 0 if none
	entries map[entryKey]bool // active entries -> deny
	stale   []policyKey       // entries of inactive generations no program can be reading
	retired bool              // Policy.retired holds entries of its previous generation
}

// Policy holds the rules of every endpoint. Each endpoint's rules are a set
// of hash entries under a generation number; policy_gen says which
// generation is active and which port prefix lengths it uses.
type Policy struct {
	m, gen *ebpf.Map

	mu  sync.Mutex // guards eps and retired, serializes changes of the maps
	eps map[uint16]*epPolicy
	// retired are the entries of replaced generations. A program that read
	// the previous generation number may still be looking them up, so they
	// are deleted only after an RCU grace period (reclaim), and lazily: at
	// the next replacement of the same endpoint, so that replacing the
	// rules of many endpoints costs one grace period, not one each.
	retired []policyKey
}

// maxRetired bounds the retired entries kept in the map before a reclaim.
const maxRetired = 1 << 15

// newPolicy reads what the kernel holds (after a restart, the rules of the
// previous process) so that Set can replace it.
func newPolicy(m, gen *ebpf.Map) (*Policy, error) {
	p := &Policy{m: m, gen: gen, eps: map[uint16]*epPolicy{}}
	var (
		ep uint16
		g  policyGenValue
	)
	it := gen.Iterate()
	for it.Next(&ep, &g) {
		p.eps[ep] = &epPolicy{gen: g.Gen, entries: map[entryKey]bool{}}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read policy generations: %w", err)
	}
	var (
		k policyKey
		v policyValue
	)
	it = m.Iterate()
	for it.Next(&k, &v) {
		ep, e := k.entry(v)
		st := p.eps[ep]
		if st == nil {
			st = &epPolicy{entries: map[entryKey]bool{}}
			p.eps[ep] = st
		}
		if k.Gen == st.gen {
			st.entries[e.key()] = e.Deny
		} else {
			st.stale = append(st.stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return p, nil
}

// Set replaces the rules of endpoint epID. The new rules are written under
// a new generation and activated by one map update before the old entries
// are deleted, so no packet sees a mix or an empty rule set. Setting the
// rules the kernel already holds changes nothing (and keeps the counters).
// An endpoint without rules denies everything in an enforced direction.
func (p *Policy) Set(epID uint16, rules []PolicyRule) error {
	entries, err := expandRules(rules)
	if err != nil {
		return fmt.Errorf("set policy of endpoint %d: %w", epID, err)
	}
	want := make(map[entryKey]bool, len(entries))
	for _, e := range entries {
		want[e.key()] = e.Deny
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.eps[epID]
	if st == nil {
		st = &epPolicy{entries: map[entryKey]bool{}}
		p.eps[epID] = st
	}
	if st.gen != 0 && len(st.stale) == 0 && maps.Equal(st.entries, want) {
		return nil
	}
	if st.retired || len(p.retired) >= maxRetired {
		if err := p.reclaim(); err != nil {
			return fmt.Errorf("set policy of endpoint %d: %w", epID, err)
		}
	}
	if err := p.deleteKeys(st.stale); err != nil {
		return fmt.Errorf("set policy of endpoint %d: %w", epID, err)
	}
	st.stale = nil

	next := st.gen%255 + 1
	keys := make([]policyKey, 0, len(entries))
	for _, e := range entries {
		k := policyKeyOf(epID, next, e)
		v := policyValue{Deny: b2u(e.Deny)}
		if err := p.m.Update(&k, &v, ebpf.UpdateAny); err != nil {
			st.stale = keys // not active; deleted by the next Set
			return fmt.Errorf("set policy of endpoint %d: write entry %+v: %w", epID, e, err)
		}
		keys = append(keys, k)
	}
	if err := p.gen.Update(epID, &policyGenValue{Gen: next, Mask: policyMasks(entries)}, ebpf.UpdateAny); err != nil {
		st.stale = keys
		return fmt.Errorf("set policy of endpoint %d: activate generation %d: %w", epID, next, err)
	}
	if old := st.keys(epID); len(old) > 0 {
		p.retired = append(p.retired, old...)
		st.retired = true
	}
	st.gen, st.entries = next, want
	return nil
}

// reclaim deletes every retired entry once no program can be using it.
func (p *Policy) reclaim() error {
	if len(p.retired) == 0 {
		return nil
	}
	if err := waitForReaders(); err != nil {
		return fmt.Errorf("delete replaced policy entries: %w", err)
	}
	if err := p.deleteKeys(p.retired); err != nil {
		return fmt.Errorf("delete replaced policy entries: %w", err)
	}
	p.retired = nil
	for _, st := range p.eps {
		st.retired = false
	}
	return nil
}

func (st *epPolicy) keys(epID uint16) []policyKey {
	out := make([]policyKey, 0, len(st.entries))
	for k, deny := range st.entries {
		e := PolicyEntry{Ingress: k.ingress, Identity: k.identity, Proto: k.proto, Port: k.port, PortBits: k.portBits, Deny: deny}
		out = append(out, policyKeyOf(epID, st.gen, e))
	}
	return out
}

func (p *Policy) deleteKeys(keys []policyKey) error {
	for i := range keys {
		if err := p.m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete policy entry: %w", err)
		}
	}
	return nil
}

// Delete removes every rule of endpoint epID; absent is not an error.
func (p *Policy) Delete(epID uint16) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.eps[epID]
	if st == nil {
		return nil
	}
	if err := p.gen.Delete(epID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete policy of endpoint %d: %w", epID, err)
	}
	// Programs that read the generation before it was deleted finish with
	// the entries of the active generation; both go after that.
	p.retired = append(p.retired, st.keys(epID)...)
	if err := p.reclaim(); err != nil {
		return fmt.Errorf("delete policy of endpoint %d: %w", epID, err)
	}
	if err := p.deleteKeys(st.stale); err != nil {
		return fmt.Errorf("delete policy of endpoint %d: %w", epID, err)
	}
	delete(p.eps, epID)
	return nil
}

// List returns the active entries of every endpoint, with their counters,
// as the kernel holds them.
func (p *Policy) List() (map[uint16][]PolicyEntry, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[uint16][]PolicyEntry{}
	for ep, st := range p.eps {
		if st.gen != 0 {
			out[ep] = []PolicyEntry{}
		}
	}
	var (
		k policyKey
		v policyValue
	)
	it := p.m.Iterate()
	for it.Next(&k, &v) {
		ep, e := k.entry(v)
		if st := p.eps[ep]; st != nil && st.gen == k.Gen {
			out[ep] = append(out[ep], e)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("policy list: %w", err)
	}
	for _, es := range out {
		slices.SortFunc(es, comparePolicyEntries)
	}
	return out, nil
}
