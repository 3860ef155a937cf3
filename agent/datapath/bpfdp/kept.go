package bpfdp

import (
	"slices"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/identity"
)

// What the kernel keeps of a value an Update accepted: List returns exactly
// this for it. The functions are pure (no kernel access), for tests and for
// callers that compare what they wrote with what the kernel holds.

// KeptIPCache is what the ipcache keeps of e: its identity and tunnel
// endpoint (an IPv4-mapped one as IPv4), not its cluster.
func KeptIPCache(e datapath.IPCacheEntry) datapath.IPCacheEntry {
	return datapath.IPCacheEntry{Identity: e.Identity, HostIP: e.HostIP.Unmap()}
}

// KeptService is what the services maps keep of s: its backends' addresses
// (unmapped) and ports in order, nil if none; no service name nor backend
// cluster.
func KeptService(s datapath.Service) datapath.Service {
	if len(s.Backends) == 0 {
		return datapath.Service{}
	}
	out := datapath.Service{Backends: make([]datapath.Backend, len(s.Backends))}
	for i, be := range s.Backends {
		out.Backends[i] = datapath.Backend{Addr: be.Addr.Unmap(), Port: be.Port}
	}
	return out
}

// KeptPolicy is what the endpoint maps keep of p: its identity and
// enforcement, and its rules as the kernel's entries give them back (see
// rulesOf): one rule per entry, not the rules as given, but the same
// policy.
func KeptPolicy(p datapath.EndpointPolicy) datapath.EndpointPolicy {
	entries, err := bpf.ExpandRules(bpfRules(p.Rules))
	if err != nil {
		return p // Update refuses p: the kernel keeps nothing of it
	}
	p.Rules = rulesOf(entries)
	return p
}

func bpfRules(rules []datapath.PolicyRule) []bpf.PolicyRule {
	out := make([]bpf.PolicyRule, len(rules))
	for i, r := range rules {
		out[i] = bpf.PolicyRule{Identity: uint32(r.Identity), Ingress: r.Ingress, Proto: r.Proto, Port: r.Port, EndPort: r.EndPort, Deny: r.Deny, ByAddress: r.ByAddress}
	}
	return out
}

// unlisted stands for kernel entries that no rules expand to (not written
// by bpf.Policy.Set): an invalid rule (EndPort without Port), which no
// policy an Update accepts contains, so that a reconciler sees a
// difference and rewrites the endpoint.
var unlisted = datapath.PolicyRule{EndPort: 1}

// rulesOf returns rules that expand to exactly the kernel's entries es
// (sorted as bpf.Policy.List sorts them): one rule per entry, a port block
// becoming a range, in the entries' order, never nil; an entry of a rule by
// address (bpf.IdentityByAddress) marks the rule of its untagged twin.
// Where no rules expand to es, the result is []PolicyRule{unlisted}. So two
// policies whose rules expand to the same entries are kept equal, and a
// listed policy equals a desired one only if the kernel enforces exactly
// the desired rules.
func rulesOf(es []bpf.PolicyEntry) []datapath.PolicyRule {
	out := make([]datapath.PolicyRule, 0, len(es))
	at := map[bpf.PolicyEntry]int{} // untagged entry (no counter) -> its rule
	var tagged []bpf.PolicyEntry
	for _, e := range es {
		e.Packets = 0
		if e.Identity&bpf.IdentityByAddress != 0 {
			tagged = append(tagged, e)
			continue
		}
		r := datapath.PolicyRule{Identity: identity.NumericIdentity(e.Identity), Ingress: e.Ingress, Proto: e.Proto, Deny: e.Deny}
		if e.Proto != 0 && e.PortBits > 0 {
			r.Port = e.Port
			if e.PortBits < 16 {
				r.EndPort = e.Port + uint16(1<<(16-e.PortBits)-1)
			}
		}
		at[e] = len(out)
		out = append(out, r)
	}
	for _, e := range tagged {
		e.Identity &^= bpf.IdentityByAddress
		i, ok := at[e]
		if !ok {
			return []datapath.PolicyRule{unlisted}
		}
		out[i].ByAddress = true
	}
	back, err := bpf.ExpandRules(bpfRules(out))
	if err != nil || !slices.EqualFunc(back, es, sameEntry) {
		return []datapath.PolicyRule{unlisted}
	}
	return out
}

// sameEntry compares entries but for their counters.
func sameEntry(a, b bpf.PolicyEntry) bool {
	a.Packets, b.Packets = 0, 0
	return a == b
}
