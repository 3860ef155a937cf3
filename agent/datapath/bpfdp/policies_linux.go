package bpfdp

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/clustermesh/clustermesh/agent/datapath"
	"github.com/clustermesh/clustermesh/bpf"
	"github.com/clustermesh/clustermesh/identity"
)

// policiesTable is the per-endpoint policy: bpf.EndpointConfigs holds the
// identity and enforcement, bpf.Policy the rules expanded into entries, and
// a record per endpoint the rules as they were given.
type policiesTable struct {
	cfgs   *bpf.EndpointConfigs
	policy *bpf.Policy
	rec    *records

	mu      sync.Mutex                    // serializes changes; guards written
	written map[uint16]bpf.EndpointConfig // configurations in the kernel
}

func policyID(ep uint16) recordID {
	var id recordID
	binary.BigEndian.PutUint16(id[:2], ep)
	return id
}

func bpfRules(rules []datapath.PolicyRule) []bpf.PolicyRule {
	out := make([]bpf.PolicyRule, len(rules))
	for i, r := range rules {
		out[i] = bpf.PolicyRule{Identity: uint32(r.Identity), Ingress: r.Ingress, Proto: r.Proto, Port: r.Port, EndPort: r.EndPort, Deny: r.Deny}
	}
	return out
}

func endpointConfig(p datapath.EndpointPolicy) bpf.EndpointConfig {
	return bpf.EndpointConfig{Identity: uint32(p.Identity), EnforceIngress: p.EnforceIngress, EnforceEgress: p.EnforceEgress}
}

// Update implements datapath.Table. No packet sees a state stricter than
// both the old and the new policy: a direction that stops being enforced
// stops before the rules change, one that starts being enforced starts
// after the new rules are in place (and bpf.Policy.Set swaps rules
// atomically).
func (t *policiesTable) Update(_ context.Context, ep uint16, p datapath.EndpointPolicy) error {
	rec := encodePolicy(p)
	cfg := endpointConfig(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	old, had := t.written[ep]
	if had && (old.EnforceIngress && !cfg.EnforceIngress || old.EnforceEgress && !cfg.EnforceEgress) {
		relaxed := bpf.EndpointConfig{Identity: cfg.Identity, EnforceIngress: old.EnforceIngress && cfg.EnforceIngress, EnforceEgress: old.EnforceEgress && cfg.EnforceEgress}
		if err := t.cfgs.Update(ep, relaxed); err != nil {
			return fmt.Errorf("policy update: %w", err)
		}
		t.written[ep] = relaxed
	}
	if err := t.policy.Set(ep, bpfRules(p.Rules)); err != nil {
		return fmt.Errorf("policy update: %w", err)
	}
	if err := t.cfgs.Update(ep, cfg); err != nil {
		return fmt.Errorf("policy update: %w", err)
	}
	t.written[ep] = cfg
	if err := t.rec.put(kindPolicy, policyID(ep), rec); err != nil {
		return fmt.Errorf("policy update of endpoint %d: %w", ep, err)
	}
	return nil
}

// Delete implements datapath.Table: the record, then the configuration (the
// endpoint's traffic then passes untouched), then the rules.
func (t *policiesTable) Delete(_ context.Context, ep uint16) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.rec.delete(kindPolicy, policyID(ep)); err != nil {
		return fmt.Errorf("policy delete of endpoint %d: %w", ep, err)
	}
	if err := t.cfgs.Delete(ep); err != nil {
		return fmt.Errorf("policy delete: %w", err)
	}
	delete(t.written, ep)
	if err := t.policy.Delete(ep); err != nil {
		return fmt.Errorf("policy delete: %w", err)
	}
	return nil
}

// List implements datapath.Table: every endpoint with a configuration or
// rules in the kernel. Where the endpoint's record expands to exactly the
// entries the kernel holds, its rules are the record's (as given);
// otherwise they are rebuilt from the entries (see fromEntries).
func (t *policiesTable) List(context.Context) (map[uint16]datapath.EndpointPolicy, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cfgs, err := t.cfgs.List()
	if err != nil {
		return nil, fmt.Errorf("policy list: %w", err)
	}
	entries, err := t.policy.List()
	if err != nil {
		return nil, fmt.Errorf("policy list: %w", err)
	}
	recs, err := t.rec.list(kindPolicy)
	if err != nil {
		return nil, fmt.Errorf("policy list: %w", err)
	}
	out := make(map[uint16]datapath.EndpointPolicy, len(cfgs))
	for ep := range cfgs {
		out[ep] = datapath.EndpointPolicy{}
	}
	for ep := range entries {
		out[ep] = datapath.EndpointPolicy{}
	}
	for ep := range out {
		cfg, hasCfg := cfgs[ep]
		es, hasRules := entries[ep]
		if p, err := decodePolicy(recs[policyID(ep)]); err == nil && hasCfg && hasRules && cfg == endpointConfig(p) && expandsTo(p.Rules, es) {
			out[ep] = p
			continue
		}
		out[ep] = datapath.EndpointPolicy{
			Identity:       identity.NumericIdentity(cfg.Identity),
			EnforceIngress: cfg.EnforceIngress,
			EnforceEgress:  cfg.EnforceEgress,
			Rules:          fromEntries(es),
		}
	}
	return out, nil
}

// expandsTo reports whether rules are what the kernel's entries were made
// from.
func expandsTo(rules []datapath.PolicyRule, held []bpf.PolicyEntry) bool {
	want, err := bpf.ExpandRules(bpfRules(rules))
	if err != nil || len(want) != len(held) {
		return false
	}
	for i, e := range held {
		e.Packets = 0
		if e != want[i] {
			return false
		}
	}
	return true
}

// fromEntries rebuilds rules from kernel entries, one rule per entry (a
// port block becomes a range), in the entries' order. They are not the
// rules as given but expand to the same entries: the same policy.
func fromEntries(es []bpf.PolicyEntry) []datapath.PolicyRule {
	out := make([]datapath.PolicyRule, 0, len(es))
	for _, e := range es {
		r := datapath.PolicyRule{Identity: identity.NumericIdentity(e.Identity), Ingress: e.Ingress, Proto: e.Proto, Deny: e.Deny}
		if e.Proto != 0 && e.PortBits > 0 {
			r.Port = e.Port
			if e.PortBits < 16 {
				r.EndPort = e.Port + uint16(1<<(16-e.PortBits)-1)
			}
		}
		out = append(out, r)
	}
	return out
}
